"""Who can find whom, and what they see: the user directory's privacy rules.

- A search needs a prefix of at least ``MIN_PREFIX`` characters, the length of the
  shortest username, so whoever knows a username always finds that person, and
  a shorter prefix lists nobody. With the per-user search limit, listing every
  username by prefix crawl (37³ prefixes at 30 a minute) takes about a day, not
  seconds.
- ``last_active_at`` is shown only to people who share a conversation with the user
  (and to the user), the same rule the gateway applies to presence, through the same
  reader of the membership cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chat_auth.accounts import Accounts
from chat_auth.rules import USERNAME_MIN
from chat_auth.throttle import canonical_login
from chat_shared.limits import RateLimiter, Rule, user_subject
from chat_shared.membership import MembershipCache
from chat_shared.ports.auth import UserRecord

MIN_PREFIX = USERNAME_MIN


@dataclass(frozen=True, slots=True)
class Listing:
    user: UserRecord
    shows_last_active: bool


class Directory:
    def __init__(
        self,
        accounts: Accounts,
        membership: MembershipCache,
        *,
        limiter: RateLimiter,
        search_rule: Rule,
    ) -> None:
        self.accounts = accounts
        self.membership = membership
        self.limiter = limiter
        self.search_rule = search_rule

    async def search(
        self, viewer: str, query: str, limit: int, after: str | None = None
    ) -> list[Listing]:
        """One page, in username order; ``after`` is the last username of the page
        before (the cursor the API hands out)."""
        await self.limiter.check(user_subject(viewer), self.search_rule)
        key = canonical_login(query)
        if len(key) < MIN_PREFIX:
            return []
        cursor = canonical_login(after) if after else None
        return await self._listed(viewer, await self.accounts.search(key, limit, cursor))

    async def lookup(self, viewer: str, user_ids: Sequence[str]) -> list[Listing]:
        return await self._listed(viewer, await self.accounts.lookup(user_ids))

    async def profile(self, viewer: str, user_id: str) -> Listing:
        (listing,) = await self._listed(viewer, [await self.accounts.profile(user_id)])
        return listing

    async def _listed(self, viewer: str, users: Sequence[UserRecord]) -> list[Listing]:
        if not users:
            return []
        contacts = await self.membership.contacts(viewer)
        return [Listing(user, user.id in contacts) for user in users]
