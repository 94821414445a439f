"""The job: one skeleton for adaptation (`train`) and pretraining (`pretrain`) -- config checks,
run identity, workdir lock, task, backbone, training loop, checkpoints, evaluation, records."""
