"""Training: the loop (fit), optimizers, losses, lr schedules, early stopping, distillation, the metrics log.

Only ``imgclf train`` uses this package; what training and inference share lives in
:mod:`imgclf.engine`.
"""
