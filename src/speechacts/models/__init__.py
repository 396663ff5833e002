"""Model families, one file each; all follow `speechacts.classifier.Classifier`."""
