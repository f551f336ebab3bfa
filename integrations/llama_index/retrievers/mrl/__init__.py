"""LlamaIndex retrievers over mrl-retrievers (namespace package: no __init__.py above this folder).

Built on the public API of ``mrl_retrievers`` only. The classes arrive with the LlamaIndex issue.
"""

__all__: list[str] = []
