"""The life-long memory: a key-value memory (Kaiser et al. 2017) kept in a folder beyond any
episode, its keys a trained model's embeddings.

    keyspace   a trained model as a map from images to unit keys, and the model's identity
    index      nearest stored keys by inner product
    store      the folder's format: manifest, safetensors arrays, JSON members, atomic writes
    memory     LifelongMemory: create, open, add (the paper's write rule), query, forget, stats
    answers    what a query is answered, and the CSV / JSON files of answers
    open_set   the threshold below which a query is "unknown", calibrated for a false-accept
               rate, and how well known and unknown queries separate (AUROC)
"""
