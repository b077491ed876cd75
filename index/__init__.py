"""Vector stores: FAISS (embedded default) and Milvus (scale-out), with SQLite metadata."""
