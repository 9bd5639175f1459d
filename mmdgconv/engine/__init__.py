from .hooks import ResourceConstraintHook

__all__ = ['ResourceConstraintHook']
