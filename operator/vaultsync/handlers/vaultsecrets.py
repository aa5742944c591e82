"""VaultSecrets have no kopf handler: the runtime lists and watches them itself (``kube/watch.py``) and
hands every event to ``Engine.on_vaultsecret``. A kopf handler would cost a kopf worker task and kopf's
per-event machinery for every object, a third of the operator's CPU in a first sync of thousands."""
