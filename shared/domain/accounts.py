"""Accounts: login, registration with verification and approval, password reset, admin management."""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Protocol

from shared.adapters.store import AccountRecord, EmailChange, Store, new_token_generation
from shared.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from shared.core.models import Account, AccountResourceLimits, ExportPackage, Stack
from shared.domain import idle, throttle
from shared.domain.auth import GENERATION_CLAIM, RESET_SCOPE, Principal

if TYPE_CHECKING:
    from shared.domain.auth import Passwords, Tokens
    from shared.domain.catalog import SpecValidator
    from shared.domain.stacks import StackPorts

    class AccountPorts(StackPorts, Protocol):
        """What accounts use: besides the stacks' adapters (an account's stacks are stopped and
        deleted with it), tokens, password hashing, the mailer and the spec validator."""

        @property
        def tokens(self) -> Tokens: ...
        @property
        def passwords(self) -> Passwords: ...
        @property
        def mailer(self) -> Mailer: ...
        @property
        def validator(self) -> SpecValidator: ...


ADMIN = "admin"
USER_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 6
RESET_TOKEN_SECONDS = 1800
EMAIL_CHANGE_SECONDS = 24 * 3600
"""How long the link confirming a new e-mail address stays good."""
RESET_SENT = "If the account exists, a password reset e-mail has been sent to its address."
"""The answer to every reset request, whether or not the account exists or a mail went out."""


class Mailer(Protocol):
    """Where account mail goes (SMTP, or the outbox folder on one machine)."""

    def send(self, to: str, subject: str, body: str) -> None: ...


class AccountLookupPorts(Protocol):
    """Finding an account by its e-mail address takes the store alone."""

    @property
    def store(self) -> Store: ...


def _clock() -> int:
    return int(time.time())


def _same(secret: str, given: str) -> bool:
    """Whether ``given`` is the (non-empty) ``secret``, compared in constant time as bytes
    (``compare_digest`` refuses text that is not ASCII; a lone surrogate still encodes this way)."""
    return bool(secret) and hmac.compare_digest(
        secret.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass")
    )


class _TokenRefused(Exception):
    """Raised inside a store change to leave the account as it was (the transaction rolls back)."""


def _spend(ports: AccountPorts, user: str, change: Callable[[AccountRecord], AccountRecord]) -> AccountRecord:
    """Apply ``change`` to ``user``'s record in one transaction, where it checks (and spends) a token
    from an e-mail: the row is locked meanwhile, so that a token works once even under concurrency.
    An unknown user and a refused token answer alike."""
    try:
        return ports.store.update_account(user, change)
    except (NotFound, _TokenRefused):
        raise NotFound("token", message="Token not found") from None


def token_generation(store: Store, user: str) -> str | None:
    """The generation tokens of ``user`` must carry, or None when the account may use none (it does
    not exist or is not approved): one primary-key read, on every authenticated call."""
    standing = store.account_standing(user)
    if standing is None or standing[0] != "approved" or not standing[1]:
        return None
    return standing[1]


REGISTRATION_PURPOSE = "registration"
"""What the tokens of the verification and approval e-mails are for, in the facts their MAC covers."""


def registration_token(tokens: Tokens, account: Account) -> str:
    """The token of ``account``'s verification link (while unverified) and approval links (while
    unapproved): a MAC under the server's secret of the account id, its e-mail address (without
    case) and status. The Go apiserver's was ``HashString(email + status)``, the same again for an
    account deleted and registered anew, which its clients rely on; but unkeyed, anyone could compute
    it. Being of the status, a token stops working as soon as the status changes: it works once."""
    return tokens.link_mac(REGISTRATION_PURPOSE, account.id, account.email.strip().lower(), account.status)


def _with_registration_token(tokens: Tokens, account: Account) -> Account:
    """``account`` holding its current registration token (the admin's list shows it)."""
    return account.model_copy(update={"token": registration_token(tokens, account)})


def _registration_token_is(tokens: Tokens, account: Account, status: str, given: str) -> bool:
    return account.status == status and _same(registration_token(tokens, account), given)


def public_view(account: Account, *, for_admin: bool) -> Account:
    """The account as the API shows it: never the password, the token only to the admin."""
    return account.model_copy(update={"password": "", "token": account.token if for_admin else ""})


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"must be at least {MIN_PASSWORD} characters", field="password")


def _user_name(account: Account) -> str:
    return (account.namespace or account.id).strip()


def _check_new_account(account: Account, *, by_admin: bool = False) -> Account:
    """Validate a new account's fields; ``namespace`` (the user name) is also its id.

    The admin is trusted as Go's PostAccount trusted it: an account the admin makes may have no
    e-mail address, and its password is the admin's choice, or empty (the account cannot log in
    until its owner sets one by a password reset). A registration needs an address to verify and a
    password of at least ``MIN_PASSWORD`` characters."""
    user = _user_name(account)
    if not USER_NAME.match(user):
        raise InvalidInput(
            "must be 3 to 32 lowercase letters, digits or '-', starting with a letter",
            field="namespace",
        )
    email = account.email.strip()
    if (email or not by_admin) and not EMAIL.match(email):
        raise InvalidInput("must be an e-mail address", field="email")
    if not account.name.strip():
        raise InvalidInput("must not be empty", field="name")
    if not by_admin:
        _check_password(account.password)
    return account.model_copy(update={"id": user, "namespace": user, "email": email})


def default_limits(ports: AccountPorts) -> AccountResourceLimits:
    limits = ports.settings.limits
    return AccountResourceLimits(
        cpuMax=limits.cpu_max,
        cpuDefault=limits.cpu_default,
        memMax=limits.mem_max,
        memDefault=limits.mem_default,
        storageQuota=limits.storage_quota,
    )


def _with_limits(ports: AccountPorts, account: Account) -> Account:
    if account.resourceLimits == AccountResourceLimits():
        return account.model_copy(update={"resourceLimits": default_limits(ports)})
    return account


def _conflict_for(ports: AccountPorts, account: Account) -> None:
    if ports.store.get_account(account.id) is not None:
        raise Conflict("Username is in use")
    found = ports.store.find_account(account.email)
    if found is not None:
        raise Conflict("Email address is already associated with another account")


# --- login ---------------------------------------------------------------------------------


def login(ports: AccountPorts, username: str, password: str, *, address: str = "") -> str:
    """A token for an approved account named by user name or e-mail, or Unauthorized.

    Failed attempts are counted per client ``address`` and per account (an unknown name counts as
    one), and past the settings' limits refused with 429 before the password is even checked; each
    attempt is counted before the check, so that parallel guesses cannot outrun the count, and a
    success takes its own back. An unknown name costs a password verification as a known one does."""
    auth = ports.settings.auth
    name = username.strip()
    now = _clock()
    address_key = throttle.counter_key("address", address)
    if address:
        throttle.count(
            ports.store,
            address_key,
            limit=auth.login_address_attempts,
            now=now,
            window_seconds=auth.login_window,
            what="failed logins from this address",
        )
    record = ports.store.find_account(name) if name else None
    account_key = throttle.counter_key("login", record.account.id if record else name.lower())
    throttle.count(
        ports.store,
        account_key,
        limit=auth.login_account_attempts,
        now=now,
        window_seconds=auth.login_window,
        what="failed logins for this account",
    )
    if record is None:
        ports.passwords.verify_nobody(password)
        raise Unauthorized("invalid user name or password")
    if not ports.passwords.verify(record.password_hash, password):
        raise Unauthorized("invalid user name or password")
    ports.store.release_throttles(cleared=[account_key], refunded=[address_key] if address else [])
    account = record.account
    if account.status != "approved":
        raise Unauthorized(f"account '{account.id}' is {account.status or 'not approved'}")
    # An imported Go account's APR1 hash (MD5) gives way to argon2 now that the password is known.
    rehashed = ports.passwords.hash(password) if ports.passwords.needs_rehash(record.password_hash) else None

    def stamp(stored: AccountRecord) -> AccountRecord:
        stored.account = stored.account.model_copy(update={"lastLogin": _clock()})
        if rehashed and stored.password_hash == record.password_hash:
            stored.password_hash = rehashed
        if not stored.token_generation:  # an account from before tokens carried one
            stored.token_generation = new_token_generation()
        return stored

    stamped = ports.store.update_account(account.id, stamp)
    return ports.tokens.issue(account.id, admin=account.id == ADMIN, generation=stamped.token_generation)


def logout(ports: AccountPorts, token: str | None) -> None:
    """End every session of the token's account: its tokens (and refreshes of them) are refused from
    now on. A token that is not (or no longer) good ends nothing, and answers the same."""
    if token is None:
        return
    try:
        principal = ports.tokens.decode(token, allow_expired=True)  # an expired one can still refresh
    except Unauthorized:
        return
    generation = principal.claims.get(GENERATION_CLAIM)
    if principal.scope is not None or not isinstance(generation, str) or not generation:
        return

    def end(stored: AccountRecord) -> AccountRecord:
        if not _same(stored.token_generation, generation):
            raise _TokenRefused
        stored.token_generation = new_token_generation()
        return stored

    with suppress(NotFound, _TokenRefused):
        ports.store.update_account(principal.user, end)


def refresh(ports: AccountPorts, token: str) -> str:
    """A fresh token, while the account still exists, is approved and has not ended the session (a
    refresh is a quiet login)."""
    return ports.tokens.refresh(token)


def ensure_admin(ports: AccountPorts) -> str | None:
    """Create the admin account if missing; returns a generated password to print once, if any."""
    configured = ports.settings.auth.admin_password
    store = ports.store
    existing = store.get_account(ADMIN)
    if existing is not None:
        if configured and not ports.passwords.verify(existing.password_hash, configured):
            password_hash = ports.passwords.hash(configured)

            def set_password(stored: AccountRecord) -> AccountRecord:
                stored.password_hash = password_hash
                stored.token_generation = new_token_generation()
                return stored

            store.update_account(ADMIN, set_password)
        return None
    password = configured or secrets.token_urlsafe(12)
    account = Account(
        id=ADMIN,
        namespace=ADMIN,
        name=ADMIN,
        description="Workbench administrator",
        email=ports.settings.server.support_email,
        status="approved",
        resourceLimits=default_limits(ports),
    )
    try:
        store.insert_account(AccountRecord(account, ports.passwords.hash(password)))
    except Conflict:
        return None  # another process created it first
    return None if configured else password


# --- registration --------------------------------------------------------------------------


def register(ports: AccountPorts, account: Account) -> Account:
    """Create an unverified account and send its verification e-mail."""
    account = _check_new_account(account)
    _conflict_for(ports, account)
    # Whoever registers gets the default limits (the idle limit too): only the admin may give more.
    account = account.model_copy(
        update={
            "status": "unverified",
            "lastLogin": 0,
            "lastActive": 0,
            "inactiveTimeout": None,
            "resourceLimits": default_limits(ports),
        }
    )
    account = _with_registration_token(ports.tokens, account)
    record = AccountRecord(
        account.model_copy(update={"password": ""}), ports.passwords.hash(account.password)
    )
    ports.store.insert_account(record)
    origin = ports.settings.server.origin
    ports.mailer.send(
        account.email,
        "Workbench: verify your e-mail address",
        f"Hello {account.name},\n\nplease verify your e-mail address for the Workbench account "
        f"'{account.id}' by opening\n\n{origin}/#/register/verify?t={account.token}&u={account.id}\n",
    )
    return public_view(account, for_admin=False)


def _new_status(ports: AccountPorts, stored: AccountRecord, status: str) -> None:
    """Every status change: the token of the new status for the account's e-mail links (the one
    sent before is stale), and a new token generation (the sessions before end)."""
    stored.account = _with_registration_token(
        ports.tokens, stored.account.model_copy(update={"status": status})
    )
    stored.token_generation = new_token_generation()


def verify(ports: AccountPorts, user: str, token: str) -> str:
    """Spend a token from a verification e-mail: a registration's (the address is verified, and with
    approval on the support address is asked to approve), or an e-mail change's (the new address
    takes effect)."""
    require_approval = ports.settings.auth.require_approval
    now = _clock()
    previous_email = ""

    def spend(stored: AccountRecord) -> AccountRecord:
        nonlocal previous_email
        account = stored.account
        if _registration_token_is(ports.tokens, account, "unverified", token):
            _new_status(ports, stored, "unapproved" if require_approval else "approved")
            return stored
        change = stored.email_change
        if (
            change is not None
            and _same(change.token, token)
            and now < change.requested_at + EMAIL_CHANGE_SECONDS
        ):
            previous_email = account.email
            stored.account = account.model_copy(update={"email": change.address})
            stored.email_change = None
            return stored
        raise _TokenRefused

    account = _spend(ports, user, spend).account
    origin = ports.settings.server.origin
    if previous_email:
        ports.mailer.send(
            previous_email,
            "Workbench: your e-mail address was changed",
            f"Hello {account.name},\n\nthe e-mail address of the Workbench account '{user}' is now "
            f"{account.email}. If you did not ask for this, tell {ports.settings.server.support_email}.\n",
        )
        return "E-mail address has been changed."
    if account.status == "approved":
        ports.mailer.send(
            account.email,
            "Workbench: your account is ready",
            f"Hello {account.name},\n\nyour account '{user}' is ready; log in at {origin}\n",
        )
        return "Account has been verified and approved."
    ports.mailer.send(
        account.email,
        "Workbench: e-mail address verified",
        f"Hello {account.name},\n\nyour e-mail address is verified. An administrator "
        "will review your account request.\n",
    )
    # The approval token is new (the registrant's is spent) and goes to the support address only.
    query = f"t={account.token}&u={user}"
    ports.mailer.send(
        ports.settings.server.support_email,
        f"Workbench: new account request from {user}",
        f"{account.name} <{account.email}> ({account.organization or 'no organization'}) asks for "
        f"the account '{user}'.\n\n{account.description}\n\n"
        f"Approve: {origin}/api/register/approve?{query}\nDeny: {origin}/api/register/deny?{query}\n",
    )
    return "Account has been verified."


def decide(ports: AccountPorts, user: str, token: str, *, approve: bool) -> str:
    """Approve or deny an account awaiting approval, by the token from the request e-mail (once)."""

    def spend(stored: AccountRecord) -> AccountRecord:
        if not _registration_token_is(ports.tokens, stored.account, "unapproved", token):
            raise _TokenRefused
        _new_status(ports, stored, "approved" if approve else "denied")
        return stored

    account = _spend(ports, user, spend).account
    if approve:
        ports.mailer.send(
            account.email,
            "Workbench: your account is approved",
            f"Hello {account.name},\n\nyour account '{user}' is approved; log in at "
            f"{ports.settings.server.origin}\n",
        )
        return "Account has been approved."
    ports.mailer.send(
        account.email,
        "Workbench: your account request was denied",
        f"Hello {account.name},\n\nyour request for the account '{user}' was denied.\n",
    )
    return "Account has been denied."


def _current_generation(ports: AccountPorts, record: AccountRecord) -> str:
    """The record's token generation, given one first if it has none (an account from before)."""
    if record.token_generation:
        return record.token_generation

    def assign(stored: AccountRecord) -> AccountRecord:
        if not stored.token_generation:
            stored.token_generation = new_token_generation()
        return stored

    return ports.store.update_account(record.account.id, assign).token_generation


def request_reset(ports: AccountPorts, name_or_email: str, *, address: str = "") -> str:
    """E-mail a link with a short-lived reset token (or the verification link, if unverified).

    The answer is the same whether the account exists or not, and whether a mail went out: within
    the settings' interval after one, a request sends none. Requests count against the client
    ``address`` as failed logins do."""
    if not name_or_email:
        raise InvalidInput("is required", field="userId")
    auth = ports.settings.auth
    now = _clock()
    if address:
        throttle.count(
            ports.store,
            throttle.counter_key("address", address),
            limit=auth.login_address_attempts,
            now=now,
            window_seconds=auth.login_window,
            what="failed logins and reset requests from this address",
        )
    record = ports.store.find_account(name_or_email)
    if record is None:
        return RESET_SENT
    account = record.account
    (sent,) = ports.store.hit_throttles(
        [throttle.counter_key("reset-mail", account.id)], now, auth.reset_interval
    )
    if sent.hits > 1:
        return RESET_SENT
    origin = ports.settings.server.origin
    if account.status == "unverified":
        ports.mailer.send(
            account.email,
            "Workbench: verify your e-mail address",
            f"{origin}/#/register/verify?t={registration_token(ports.tokens, account)}&u={account.id}\n",
        )
        return RESET_SENT
    token = ports.tokens.issue(
        account.id,
        scope=RESET_SCOPE,
        lifetime_seconds=RESET_TOKEN_SECONDS,
        generation=_current_generation(ports, record),
    )
    ports.mailer.send(
        account.email,
        "Workbench: reset your password",
        f"Hello {account.name},\n\nset a new password for '{account.id}' within "
        f"{RESET_TOKEN_SECONDS // 60} minutes at\n\n{origin}/#/recover?t={token}\n",
    )
    return RESET_SENT


def change_password(ports: AccountPorts, token: str | None, password: str) -> str:
    """Set the caller's password; a reset token from the e-mail is accepted here (and only here).

    The change ends every session of the account (the caller's too), which spends the reset token:
    it carries the generation the change replaces."""
    if token is None:
        raise Unauthorized("missing bearer token")
    principal = ports.tokens.decode(token)
    if principal.scope is None:
        ports.tokens.check_generation(principal)
    elif principal.scope != RESET_SCOPE:
        raise Unauthorized(f"a {principal.scope} token cannot change a password")
    _check_password(password)
    password_hash = ports.passwords.hash(password)
    generation = principal.claims.get(GENERATION_CLAIM)

    def change(stored: AccountRecord) -> AccountRecord:
        if (
            not isinstance(generation, str)
            or not _same(stored.token_generation, generation)
            or stored.account.status == "unverified"
        ):
            raise Unauthorized(
                "this token was used or is no longer valid; ask for a new password reset e-mail"
            )
        stored.password_hash = password_hash
        stored.token_generation = new_token_generation()
        return stored

    try:
        ports.store.update_account(principal.user, change)
    except NotFound:
        raise Unauthorized(f"account '{principal.user}' no longer exists") from None
    return "Password changed."


def account_for_email(ports: AccountLookupPorts, email: str) -> str:
    """The approved Workbench account of a Clowder user, by e-mail."""
    record = ports.store.find_account(email.strip())
    if record is None or record.account.email.strip().lower() != email.strip().lower():
        raise InvalidInput(f"no Workbench account has the e-mail address {email!r}", field="email")
    if record.account.status != "approved":
        raise InvalidInput(f"the Workbench account of {email!r} is not approved", field="email")
    return record.account.id


# --- management ----------------------------------------------------------------------------


def _visible(ports: AccountPorts, principal: Principal, account_id: str) -> AccountRecord:
    if not principal.admin and principal.user != account_id:
        raise Forbidden("you may only see your own account")
    record = ports.store.get_account(account_id)
    if record is None:
        raise NotFound("account", account_id)
    return record


def list_accounts(ports: AccountPorts) -> list[Account]:
    return [public_view(idle.shown(ports.settings, r), for_admin=True) for r in ports.store.list_accounts()]


def create(ports: AccountPorts, account: Account, *, password_hash: str | None = None) -> Account:
    """An account made by the admin: approved at once (server.go PostAccount). A name in use is 409
    before anything else is checked; an empty password leaves the account without one, so that it
    cannot log in until its owner sets one by a password reset. ``password_hash``, from an import,
    is stored as it is instead of hashing ``password``."""
    if ports.store.get_account(_user_name(account)) is not None:
        raise Conflict("Username is in use")
    account = _with_limits(ports, _check_new_account(account, by_admin=True))
    _conflict_for(ports, account)
    account = _with_registration_token(
        ports.tokens, account.model_copy(update={"status": account.status or "approved"})
    )
    if password_hash is None:
        password_hash = ports.passwords.hash(account.password) if account.password else ""
    # A new record, so a new token generation: tokens of an account deleted before under the same
    # name carry another and stay refused.
    ports.store.insert_account(AccountRecord(account.model_copy(update={"password": ""}), password_hash))
    return public_view(account, for_admin=True)


def read(ports: AccountPorts, principal: Principal, account_id: str) -> Account:
    record = _visible(ports, principal, account_id)
    return public_view(idle.shown(ports.settings, record), for_admin=principal.admin)


def update(ports: AccountPorts, principal: Principal, account_id: str, changes: Account) -> Account:
    """Change an account; only the admin may change its status or limits, but the user may lower
    the account's idle limit (``inactiveTimeout``, not to 0, which is none).

    A new e-mail address from the admin takes effect at once (the admin is trusted with addresses, as
    when creating accounts); one from the user waits for the link mailed to it (until then the
    account keeps its address, and Clowder events naming the new one find no account). A new
    password or status ends the account's sessions."""
    _visible(ports, principal, account_id)
    if changes.id and changes.id != account_id:
        raise InvalidInput(f"does not match the path ('{account_id}')", field="id")
    if changes.namespace and changes.namespace != account_id:
        raise InvalidInput(f"cannot be changed (is '{account_id}')", field="namespace")
    new_email = changes.email.strip()
    if new_email and not EMAIL.match(new_email):
        raise InvalidInput("must be an e-mail address", field="email")
    if new_email and not principal.admin:
        holder = ports.store.find_account(new_email)
        if holder is not None and holder.account.id != account_id:
            raise Conflict("Email address is already associated with another account")
    if changes.inactiveTimeout is not None and changes.inactiveTimeout < 0:
        raise InvalidInput("must be a number of minutes, or 0 for none", field="inactiveTimeout")
    if changes.password:
        _check_password(changes.password)
    password_hash = ports.passwords.hash(changes.password) if changes.password else None
    requested: EmailChange | None = None

    def change(stored: AccountRecord) -> AccountRecord:
        nonlocal requested
        current = stored.account
        update: dict[str, object] = {
            "name": changes.name or current.name,
            "description": changes.description,
            "organization": changes.organization,
        }
        status_changed = False
        if principal.admin:
            if new_email:
                update["email"] = new_email
            if changes.status and changes.status != current.status:
                status_changed = True
            if changes.resourceLimits != AccountResourceLimits():
                update["resourceLimits"] = changes.resourceLimits
        elif changes.status and changes.status != current.status:
            raise Forbidden("only the admin may change an account's status")
        elif changes.resourceLimits not in (AccountResourceLimits(), current.resourceLimits):
            raise Forbidden("only the admin may change an account's limits")
        elif new_email and new_email.lower() != current.email.strip().lower():
            requested = EmailChange(new_email, secrets.token_urlsafe(24), _clock())
            stored.email_change = requested
        idle_limit = _idle_limit(ports, principal, current, changes.inactiveTimeout)
        if idle_limit is not None:
            update["inactiveTimeout"] = idle_limit
        stored.account = _with_registration_token(ports.tokens, current.model_copy(update=update))
        if status_changed:
            _new_status(ports, stored, changes.status)
        if password_hash:
            stored.password_hash = password_hash
            stored.token_generation = new_token_generation()
        return stored

    stored = ports.store.update_account(account_id, change)
    updated = stored.account
    if requested is not None:
        ports.mailer.send(
            requested.address,
            "Workbench: confirm your new e-mail address",
            f"Hello {updated.name},\n\nto make {requested.address} the e-mail address of the Workbench "
            f"account '{account_id}', open within {EMAIL_CHANGE_SECONDS // 3600} hours\n\n"
            f"{ports.settings.server.origin}/#/register/verify?t={requested.token}&u={account_id}\n",
        )
    return public_view(idle.shown(ports.settings, stored), for_admin=principal.admin)


def _idle_limit(ports: AccountPorts, principal: Principal, current: Account, asked: int | None) -> int | None:
    """The idle limit (minutes) to store, or None to keep the account's. Asking for the limit in force
    changes nothing (a client puts back the account it read); the admin may set any, the user only a
    shorter one (the Go apiserver let the admin alone set ``inactiveTimeout``)."""
    in_force = idle.limit_minutes(ports.settings, current)
    if asked is None or asked == in_force:
        return None
    if not principal.admin and (asked == 0 or 0 < in_force < asked):
        raise Forbidden(f"only the admin may raise an account's idle limit (now {in_force} minutes)")
    return asked


def delete(ports: AccountPorts, account_id: str) -> None:
    """Remove an account with its stacks (stopped first), catalog and home."""
    from shared.domain import stacks

    if account_id == ADMIN:
        raise Forbidden("the admin account cannot be deleted")
    if ports.store.get_account(account_id) is None:
        raise NotFound("account", account_id)
    for stack in ports.store.list_stacks(account_id):
        ports.runtime.remove(stacks.plan_for(ports, account_id, stack))
    ports.runtime.remove_account(account_id)
    ports.store.delete_account(account_id)


def _stopped(stack: Stack, sid: str | None = None) -> Stack:
    """``stack`` as at rest, without runtime state; with ``sid``, re-identified under that id."""
    sid = sid or stack.id
    return stack.model_copy(
        update={
            "id": sid,
            "status": "stopped",
            "services": [
                service.model_copy(
                    update={
                        "id": f"{sid}-{service.service}" if sid != stack.id else service.id,
                        "stack": sid,
                        "status": "",
                        "endpoints": None,
                        "statusMessages": [],
                    }
                )
                for service in stack.services
            ],
        }
    )


def export_package(ports: AccountPorts, principal: Principal, account_id: str) -> ExportPackage:
    """The account with its catalog and (stopped) stacks. Unlike the Go apiserver's export, it
    carries no password hash (no answer of this API holds one): an account imported from it gets
    its password by a reset."""
    record = _visible(ports, principal, account_id)
    return ExportPackage(
        account=public_view(record.account, for_admin=False),
        services=ports.store.list_specs(account_id),
        stacks=[_stopped(stack) for stack in ports.store.list_stacks(account_id)],
    )


def _import_stack(ports: AccountPorts, owner: str, stack: Stack) -> None:
    """Add an imported stack, under a new id when its own is taken (e.g. by the exported account)."""
    from shared.domain.stacks import new_stack_id

    candidate = _stopped(stack)
    for _ in range(5):
        try:
            ports.store.insert_stack(owner, candidate)
        except Conflict:
            candidate = _stopped(stack, new_stack_id())
            continue
        return
    raise Conflict("could not allocate a stack id; try again")


def _imported_hash(ports: AccountPorts, password: str) -> str:
    """The password hash to store for an imported account: the hash its export carries (APR1 from
    the Go apiserver, argon2), stored as it is; a plain password, hashed; none (the account then gets
    its password by a reset)."""
    from shared.core import apr1

    if not password or apr1.is_apr1(password) or password.startswith(("$argon2id$", "$argon2i$")):
        return password
    _check_password(password)
    return ports.passwords.hash(password)


def import_package(ports: AccountPorts, package: ExportPackage) -> Account:
    """Create an account from an export, with its catalog and (stopped) stacks; all or nothing. The
    account keeps the exported password hash (server.go ImportAccount), so its owner logs in with the
    same password."""
    account = package.account
    password_hash = _imported_hash(ports, account.password)
    checked = [ports.validator.check_posted(spec.model_dump()).spec for spec in package.services]
    created = create(
        ports,
        account.model_copy(update={"status": account.status or "approved", "password": ""}),
        password_hash=password_hash,
    )
    try:
        for spec in checked:
            ports.store.replace_spec(created.id, spec)
        for stack in package.stacks:
            _import_stack(ports, created.id, stack)
    except BaseException:
        ports.store.delete_account(created.id)
        raise
    return created
