"""Accounts: login, registration with verification and approval, password reset, admin management."""

from __future__ import annotations

import re
import secrets
import time
from typing import TYPE_CHECKING

from shared.auth import RESET_SCOPE, Principal
from shared.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from shared.models import Account, AccountResourceLimits, ExportPackage, Stack
from shared.store import AccountRecord

if TYPE_CHECKING:
    from shared.bootstrap import Platform

ADMIN = "admin"
USER_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 6


def public_view(account: Account, *, for_admin: bool) -> Account:
    """The account as the API shows it: never the password, the token only to the admin."""
    return account.model_copy(update={"password": "", "token": account.token if for_admin else ""})


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"must be at least {MIN_PASSWORD} characters", field="password")


def _check_new_account(account: Account) -> Account:
    """Validate a new account's fields; ``namespace`` (the user name) is also its id."""
    user = (account.namespace or account.id).strip()
    if not USER_NAME.match(user):
        raise InvalidInput(
            "must be 3 to 32 lowercase letters, digits or '-', starting with a letter",
            field="namespace",
        )
    email = account.email.strip()
    if not EMAIL.match(email):
        raise InvalidInput("must be an e-mail address", field="email")
    if not account.name.strip():
        raise InvalidInput("must not be empty", field="name")
    _check_password(account.password)
    return account.model_copy(update={"id": user, "namespace": user, "email": email})


def default_limits(platform: Platform) -> AccountResourceLimits:
    limits = platform.settings.limits
    return AccountResourceLimits(
        cpuMax=limits.cpu_max,
        cpuDefault=limits.cpu_default,
        memMax=limits.mem_max,
        memDefault=limits.mem_default,
        storageQuota=limits.storage_quota,
    )


def _with_limits(platform: Platform, account: Account) -> Account:
    if account.resourceLimits == AccountResourceLimits():
        return account.model_copy(update={"resourceLimits": default_limits(platform)})
    return account


def _conflict_for(platform: Platform, account: Account) -> None:
    if platform.store.get_account(account.id) is not None:
        raise Conflict("Username is in use")
    found = platform.store.find_account(account.email)
    if found is not None:
        raise Conflict("Email address is already associated with another account")


# --- login ---------------------------------------------------------------------------------


def login(platform: Platform, username: str, password: str) -> str:
    """A token for an approved account named by user name or e-mail, or Unauthorized."""
    record = platform.store.find_account(username.strip()) if username.strip() else None
    if record is None or not platform.passwords.verify(record.password_hash, password):
        raise Unauthorized("invalid user name or password")
    account = record.account
    if account.status != "approved":
        raise Unauthorized(f"account '{account.id}' is {account.status or 'not approved'}")

    def stamp(stored: AccountRecord) -> AccountRecord:
        stored.account = stored.account.model_copy(update={"lastLogin": int(time.time())})
        return stored

    platform.store.update_account(account.id, stamp)
    return platform.tokens.issue(account.id, admin=account.id == ADMIN)


def refresh(platform: Platform, token: str) -> str:
    """A fresh token, while the account still exists and is approved (a refresh is a quiet login)."""
    fresh = platform.tokens.refresh(token)
    user = platform.tokens.decode(fresh).user
    record = platform.store.get_account(user)
    if record is None or record.account.status != "approved":
        raise Unauthorized(f"account '{user}' can no longer log in")
    return fresh


def ensure_admin(platform: Platform) -> str | None:
    """Create the admin account if missing; returns a generated password to print once, if any."""
    configured = platform.settings.auth.admin_password
    store = platform.store
    existing = store.get_account(ADMIN)
    if existing is not None:
        if configured and not platform.passwords.verify(existing.password_hash, configured):
            password_hash = platform.passwords.hash(configured)

            def set_password(stored: AccountRecord) -> AccountRecord:
                stored.password_hash = password_hash
                return stored

            store.update_account(ADMIN, set_password)
        return None
    password = configured or secrets.token_urlsafe(12)
    account = Account(
        id=ADMIN,
        namespace=ADMIN,
        name=ADMIN,
        description="Workbench administrator",
        email=platform.settings.server.support_email,
        status="approved",
        resourceLimits=default_limits(platform),
    )
    try:
        store.insert_account(AccountRecord(account, platform.passwords.hash(password)))
    except Conflict:
        return None  # another process created it first
    return None if configured else password


# --- registration --------------------------------------------------------------------------


def register(platform: Platform, account: Account) -> Account:
    """Create an unverified account and send its verification e-mail."""
    account = _check_new_account(account)
    _conflict_for(platform, account)
    # Whoever registers gets the default limits: only the admin may give more.
    account = account.model_copy(
        update={
            "status": "unverified",
            "token": secrets.token_urlsafe(24),
            "lastLogin": 0,
            "resourceLimits": default_limits(platform),
        }
    )
    record = AccountRecord(
        account.model_copy(update={"password": ""}), platform.passwords.hash(account.password)
    )
    platform.store.insert_account(record)
    origin = platform.settings.server.origin
    platform.mailer.send(
        account.email,
        "Workbench: verify your e-mail address",
        f"Hello {account.name},\n\nplease verify your e-mail address for the Workbench account "
        f"'{account.id}' by opening\n\n{origin}/#/register/verify?t={account.token}&u={account.id}\n",
    )
    return public_view(account, for_admin=False)


def _by_token(platform: Platform, user: str, token: str, status: str) -> AccountRecord:
    record = platform.store.get_account(user)
    if (
        record is None
        or record.account.status != status
        or not record.account.token
        or not secrets.compare_digest(record.account.token, token)
    ):
        raise NotFound("token", message="Token not found")
    return record


def _set_status(platform: Platform, user: str, status: str) -> Account:
    def change(stored: AccountRecord) -> AccountRecord:
        stored.account = stored.account.model_copy(update={"status": status})
        return stored

    return platform.store.update_account(user, change).account


def verify(platform: Platform, user: str, token: str) -> str:
    """Mark a registered address verified; with approval on, ask the support address to approve."""
    record = _by_token(platform, user, token, "unverified")
    account = record.account
    if not platform.settings.auth.require_approval:
        _set_status(platform, user, "approved")
        platform.mailer.send(
            account.email,
            "Workbench: your account is ready",
            f"Hello {account.name},\n\nyour account '{user}' is ready; log in at "
            f"{platform.settings.server.origin}\n",
        )
        return "Account has been verified and approved."
    _set_status(platform, user, "unapproved")
    origin = platform.settings.server.origin
    platform.mailer.send(
        account.email,
        "Workbench: e-mail address verified",
        f"Hello {account.name},\n\nyour e-mail address is verified. An administrator "
        "will review your account request.\n",
    )
    query = f"t={account.token}&u={user}"
    platform.mailer.send(
        platform.settings.server.support_email,
        f"Workbench: new account request from {user}",
        f"{account.name} <{account.email}> ({account.organization or 'no organization'}) asks for "
        f"the account '{user}'.\n\n{account.description}\n\n"
        f"Approve: {origin}/api/register/approve?{query}\nDeny: {origin}/api/register/deny?{query}\n",
    )
    return "Account has been verified."


def decide(platform: Platform, user: str, token: str, *, approve: bool) -> str:
    """Approve or deny an account awaiting approval, by the token from the request e-mail."""
    record = _by_token(platform, user, token, "unapproved")
    account = _set_status(platform, user, "approved" if approve else "denied")
    if approve:
        platform.mailer.send(
            account.email,
            "Workbench: your account is approved",
            f"Hello {account.name},\n\nyour account '{user}' is approved; log in at "
            f"{platform.settings.server.origin}\n",
        )
        return "Account has been approved."
    platform.mailer.send(
        record.account.email,
        "Workbench: your account request was denied",
        f"Hello {account.name},\n\nyour request for the account '{user}' was denied.\n",
    )
    return "Account has been denied."


def request_reset(platform: Platform, name_or_email: str) -> str:
    """E-mail a link with a short-lived reset token (or the verification link, if unverified)."""
    if not name_or_email:
        raise InvalidInput("is required", field="userId")
    record = platform.store.find_account(name_or_email)
    if record is None:
        raise NotFound("account", name_or_email)
    account = record.account
    origin = platform.settings.server.origin
    if account.status == "unverified":
        platform.mailer.send(
            account.email,
            "Workbench: verify your e-mail address",
            f"{origin}/#/register/verify?t={account.token}&u={account.id}\n",
        )
    else:
        token = platform.tokens.issue(account.id, scope=RESET_SCOPE, lifetime_seconds=1800)
        platform.mailer.send(
            account.email,
            "Workbench: reset your password",
            f"Hello {account.name},\n\nset a new password for '{account.id}' within "
            f"30 minutes at\n\n{origin}/#/recover?t={token}\n",
        )
    return "Password reset e-mail sent."


def change_password(platform: Platform, token: str | None, password: str) -> str:
    """Set the caller's password; a reset token from the e-mail is accepted here (and only here)."""
    if token is None:
        raise Unauthorized("missing bearer token")
    principal = platform.tokens.decode(token)
    if principal.scope not in (None, RESET_SCOPE):
        raise Unauthorized(f"a {principal.scope} token cannot change a password")
    _check_password(password)
    password_hash = platform.passwords.hash(password)

    def change(stored: AccountRecord) -> AccountRecord:
        stored.password_hash = password_hash
        return stored

    platform.store.update_account(principal.user, change)
    return "Password changed."


# --- management ----------------------------------------------------------------------------


def _visible(platform: Platform, principal: Principal, account_id: str) -> AccountRecord:
    if not principal.admin and principal.user != account_id:
        raise Forbidden("you may only see your own account")
    record = platform.store.get_account(account_id)
    if record is None:
        raise NotFound("account", account_id)
    return record


def list_accounts(platform: Platform) -> list[Account]:
    return [public_view(r.account, for_admin=True) for r in platform.store.list_accounts()]


def create(platform: Platform, account: Account) -> Account:
    """An account made by the admin: approved at once."""
    account = _with_limits(platform, _check_new_account(account))
    _conflict_for(platform, account)
    account = account.model_copy(update={"status": account.status or "approved", "token": ""})
    platform.store.insert_account(
        AccountRecord(account.model_copy(update={"password": ""}), platform.passwords.hash(account.password))
    )
    return public_view(account, for_admin=True)


def read(platform: Platform, principal: Principal, account_id: str) -> Account:
    return public_view(_visible(platform, principal, account_id).account, for_admin=principal.admin)


def update(platform: Platform, principal: Principal, account_id: str, changes: Account) -> Account:
    """Change an account; only the admin may change its status or limits."""
    _visible(platform, principal, account_id)
    if changes.id and changes.id != account_id:
        raise InvalidInput(f"does not match the path ('{account_id}')", field="id")
    if changes.namespace and changes.namespace != account_id:
        raise InvalidInput(f"cannot be changed (is '{account_id}')", field="namespace")
    if changes.email and not EMAIL.match(changes.email.strip()):
        raise InvalidInput("must be an e-mail address", field="email")
    if changes.password:
        _check_password(changes.password)
    password_hash = platform.passwords.hash(changes.password) if changes.password else None

    def change(stored: AccountRecord) -> AccountRecord:
        current = stored.account
        update: dict[str, object] = {
            "name": changes.name or current.name,
            "description": changes.description,
            "email": changes.email.strip() or current.email,
            "organization": changes.organization,
        }
        if principal.admin:
            if changes.status:
                update["status"] = changes.status
            if changes.resourceLimits != AccountResourceLimits():
                update["resourceLimits"] = changes.resourceLimits
        elif changes.status and changes.status != current.status:
            raise Forbidden("only the admin may change an account's status")
        elif changes.resourceLimits not in (AccountResourceLimits(), current.resourceLimits):
            raise Forbidden("only the admin may change an account's limits")
        stored.account = current.model_copy(update=update)
        if password_hash:
            stored.password_hash = password_hash
        return stored

    return public_view(platform.store.update_account(account_id, change).account, for_admin=principal.admin)


def delete(platform: Platform, account_id: str) -> None:
    """Remove an account with its stacks (stopped first), catalog and home."""
    from shared import stacks

    if account_id == ADMIN:
        raise Forbidden("the admin account cannot be deleted")
    if platform.store.get_account(account_id) is None:
        raise NotFound("account", account_id)
    for stack in platform.store.list_stacks(account_id):
        platform.runtime.remove(stacks.plan_for(platform, account_id, stack))
    platform.runtime.remove_account(account_id)
    platform.store.delete_account(account_id)


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


def export_package(platform: Platform, principal: Principal, account_id: str) -> ExportPackage:
    record = _visible(platform, principal, account_id)
    return ExportPackage(
        account=public_view(record.account, for_admin=False),
        services=platform.store.list_specs(account_id),
        stacks=[_stopped(stack) for stack in platform.store.list_stacks(account_id)],
    )


def _import_stack(platform: Platform, owner: str, stack: Stack) -> None:
    """Add an imported stack, under a new id when its own is taken (e.g. by the exported account)."""
    from shared.stacks import new_stack_id

    candidate = _stopped(stack)
    for _ in range(5):
        try:
            platform.store.insert_stack(owner, candidate)
        except Conflict:
            candidate = _stopped(stack, new_stack_id())
            continue
        return
    raise Conflict("could not allocate a stack id; try again")


def import_package(platform: Platform, package: ExportPackage) -> Account:
    """Create an account from an export, with its catalog and (stopped) stacks; all or nothing."""
    account = package.account
    if not account.password:
        account = account.model_copy(update={"password": secrets.token_urlsafe(16)})
    checked = [platform.validator.validate(spec.model_dump()) for spec in package.services]
    created = create(platform, account.model_copy(update={"status": account.status or "approved"}))
    try:
        for spec in checked:
            platform.store.replace_spec(created.id, spec)
        for stack in package.stacks:
            _import_stack(platform, created.id, stack)
    except BaseException:
        platform.store.delete_account(created.id)
        raise
    return created
