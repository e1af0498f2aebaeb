"""The service layer: every use case asks the policy, and the policy's answers per identity."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import dataflow_lite.services
from dataflow_lite import bootstrap
from dataflow_lite.services import datasets, endpoints, instruments, searches, transfers, users
from dataflow_lite.services.errors import Forbidden, NotFound
from dataflow_lite.services.identity import Identity, system
from dataflow_lite.services.policy import RULES, USE_CASES, PolicySkipped, authorize, use_case

PACKAGE = Path(dataflow_lite.services.__file__).parent.parent


def imports_of(*places: str) -> set[tuple[str, str]]:
    """(file, imported module) for every import in the files under ``places`` of the package."""
    found = set()
    for place in places:
        target = PACKAGE / place
        for path in [target] if target.suffix else target.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    found.add((str(path.relative_to(PACKAGE)), node.module or ""))
                elif isinstance(node, ast.Import):
                    found |= {(str(path.relative_to(PACKAGE)), a.name) for a in node.names}
    return found


@pytest.mark.parametrize(
    "places, forbidden",
    [
        # The web pages call the services, never the API nor the database.
        (["web"], ("dataflow_lite.api", "dataflow_lite.store.db", "sqlmodel", "sqlalchemy")),
        # Nothing below the HTTP faces knows HTTP.
        (
            [
                "services",
                "store",
                "transfers",
                "cli",
                "bootstrap.py",
                "adapter",
                "live_checks.py",
            ],
            ("flask", "werkzeug", "flask_smorest", "flask_wtf"),
        ),
        (["services"], ("dataflow_lite.api", "dataflow_lite.web", "dataflow_lite.cli")),
        (
            ["store", "transfers"],
            (
                "dataflow_lite.services",
                "dataflow_lite.api",
                "dataflow_lite.web",
                "dataflow_lite.cli",
            ),
        ),
    ],
)
def test_the_layers_import_only_downwards(places: list[str], forbidden: tuple[str, ...]):
    crossing = [pair for pair in imports_of(*places) if pair[1].startswith(forbidden)]
    assert crossing == []


def service_modules():
    for info in pkgutil.iter_modules(dataflow_lite.services.__path__):
        yield importlib.import_module(f"dataflow_lite.services.{info.name}")


def test_every_function_taking_an_identity_is_a_declared_use_case():
    """A service function given (rt, identity) must be declared, so its check is enforced."""
    undeclared = []
    for module in service_modules():
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__ or name.startswith("_"):
                continue
            parameters = list(inspect.signature(function).parameters)
            if parameters[:2] == ["rt", "identity"] and not hasattr(function, "__wrapped__"):
                undeclared.append(f"{module.__name__}.{name}")
    assert undeclared == []
    assert len(USE_CASES) >= 30
    assert set(USE_CASES.values()) <= set(RULES)


def test_a_use_case_that_never_asks_the_policy_fails():
    @use_case("dataset.read")
    def forgetful(rt: object, identity: Identity) -> str:
        return "shown without a check"

    with pytest.raises(PolicySkipped, match="forgetful never asked the policy"):
        forgetful(None, system())


def test_a_use_case_that_asks_passes_and_refusals_name_the_rule():
    @use_case("user.add")
    def careful(rt: object, identity: Identity) -> str:
        authorize(identity, "user.add")
        return "done"

    assert careful(None, system()) == "done"
    with pytest.raises(Forbidden, match="only an administrator"):
        careful(None, Identity(users.User(id=5, username="ada"), "api-key 1"))


@pytest.fixture
def rt(instance: Path) -> bootstrap.Runtime:
    return bootstrap.build(instance, {"queue_immediate": True})


def test_users_are_refused_what_only_admins_may_do(rt, cli):
    cli("user", "add", "ada")
    ada = Identity(users.list_users(rt, system())[0], "api-key 1")
    admin_only = [
        lambda: users.add_user(rt, ada, "eve"),
        lambda: users.list_users(rt, ada),
        lambda: users.change_user(rt, ada, 1, "make-admin"),
        lambda: instruments.add_instrument(rt, ada, "AFM"),
        lambda: endpoints.register_endpoint(rt, ada, "nas", "local", {"path": "/tmp"}),
        lambda: endpoints.remove_endpoint(rt, ada, "local"),
        lambda: endpoints.check_all(rt, ada),
        lambda: searches.rebuild_search(rt, ada),
    ]
    for attempt in admin_only:
        with pytest.raises(Forbidden):
            attempt()


def test_others_datasets_and_transfers_are_not_found(rt, cli):
    cli("user", "add", "ada")
    cli("user", "add", "bob")
    ada, bob = (Identity(user, "api-key 1") for user in users.list_users(rt, system()))
    made = datasets.create_dataset(rt, ada, "scan", None, [("tags", "afm")])
    assert datasets.get_dataset(rt, ada, made["id"])["name"] == "scan"
    with pytest.raises(NotFound, match=f"dataset {made['id']} not found"):
        datasets.get_dataset(rt, bob, made["id"])
    (row,) = transfers.list_transfers(rt, ada)
    with pytest.raises(NotFound):
        transfers.retry_transfer(rt, bob, row.transfer.id)
    assert transfers.list_transfers(rt, bob) == []
    assert len(transfers.list_transfers(rt, system())) == 1


def test_the_system_has_no_datasets_of_its_own(rt):
    with pytest.raises(Forbidden, match="needs a user"):
        datasets.create_dataset(rt, system(), "scan", None, [])
