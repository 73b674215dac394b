"""HTTP function ``accounts``: the admin's account management and each user's own account."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.core.errors import InvalidInput
from shared.core.models import Account, ExportPackage
from shared.domain import accounts as account_service
from shared.serving.api import Call, json_errors, serve


def list_accounts(call: Call) -> list[Account]:
    return account_service.list_accounts(call.platform)


def create(call: Call) -> Account:
    return account_service.create(call.platform, call.body)


def read(call: Call) -> Account:
    return account_service.read(call.platform, call.principal, call.params["account_id"])


def update(call: Call) -> Account:
    return account_service.update(call.platform, call.principal, call.params["account_id"], call.body)


def delete(call: Call) -> None:
    account_service.delete(call.platform, call.params["account_id"])


def export_package(call: Call) -> ExportPackage:
    return account_service.export_package(call.platform, call.principal, call.params["account_id"])


def import_package(call: Call) -> Account:
    package: ExportPackage = call.body
    named = call.params.get("account_id")  # /api/import/{userId}: the Go CLI names the account
    if named is not None and named != (package.account.namespace or package.account.id):
        raise InvalidInput(f"does not match the path ('{named}')", field="account.namespace")
    return account_service.import_package(call.platform, package)


json_errors()


@functions_framework.http
def accounts(request: Request) -> Response:
    return serve(
        "accounts",
        request,
        {
            "list": list_accounts,
            "create": create,
            "read": read,
            "update": update,
            "delete": delete,
            "export_package": export_package,
            "import_package": import_package,
        },
    )
