"""Few-shot training: manifests, cached frozen features, augmentation, batches, the fit loop."""
