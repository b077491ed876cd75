"""The FastAPI service and the Gradio search UI."""
