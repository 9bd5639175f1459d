from .resource_constraint_hook import ResourceConstraintHook

__all__ = ['ResourceConstraintHook']
