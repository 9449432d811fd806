"""netreduce's compression library: models, data, training, measurements, techniques, search.

Pure PyTorch: never imports the web, database or queue layers, so everything runs in a notebook.
"""
