from .hooks import LossTermHook, PEDInfoMaxHook, ResourceConstraintHook

__all__ = ['LossTermHook', 'PEDInfoMaxHook', 'ResourceConstraintHook']
