"""Policy serving: a websocket server that batches requests from many robots, and its client.

Nothing is imported here on purpose: ``qtransformer.serving.client`` must stay importable on a robot
computer without pulling in torch or the model, and the server imports only the inference policy.
"""
