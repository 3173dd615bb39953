"""Our GitHub REST client: the calls the GitHub backend and its commands make, and no others.

One façade over the concerns it is cut into: `github_core` (token, headers, rate limits,
errors, pages), `github_releases` (releases and assets) and `github_repos` (users,
repositories, refs and contents). Failures raise `pywharf.clients.errors`.
"""

from __future__ import annotations

from pywharf.clients.github_releases import ReleaseCalls
from pywharf.clients.github_repos import RepositoryCalls

__all__ = ["GitHubClient"]


class GitHubClient(ReleaseCalls, RepositoryCalls):
    """GitHub's REST API for one token, over one pooled transport."""
