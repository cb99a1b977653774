"""``flask consent vendors``: the vendor catalogue as this app sees it.

Every vendor: the services declared in ``CONSENTKIT_SERVICES`` first (marked),
then the rest of the catalogue, with its category, name and hosts.
``--category`` keeps the vendors whose hosts a grant of that category allows
(their own category or one they are shared with).
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..categories import Service
from ..vendors import CATALOGUE_CATEGORIES, VendorRegistry
from . import cli, kit_state


def _registry() -> VendorRegistry:
    ext = kit_state()
    registry = ext.vendors
    if isinstance(registry, VendorRegistry):
        return registry
    return VendorRegistry(ext.settings.category_keys, ext.settings.services)


def vendor_json(service: Service) -> dict[str, Any]:
    """One vendor as JSON: hosts and cookies as the strings they are written as."""
    return {
        "key": service.key,
        "name": service.name,
        "category": service.category,
        "shared_with": list(service.shared_with),
        "hosts": [str(h) for h in service.hosts],
        "cookies": [str(c) for c in service.cookies],
        "countries": list(service.countries),
        "purpose": service.purpose if isinstance(service.purpose, str | None)
        else dict(service.purpose),
        "policy_url": service.policy_url,
        "declared": service.declared,
    }


def render_table(services: list[Service]) -> str:
    """Aligned columns: key, category (+ shared), name, host count, declared."""
    rows = [("KEY", "CATEGORY", "NAME", "HOSTS", "DECLARED")]
    for s in services:
        category = " +".join((s.category, *s.shared_with))
        rows.append((s.key, category, s.name, str(len(s.hosts)), "yes" if s.declared else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for key, category, name, hosts, declared in rows:
        line = (f"{key:<{widths[0]}}  {category:<{widths[1]}}  {name:<{widths[2]}}  "
                f"{hosts:>{widths[3]}}  {declared}")
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


@cli.command("vendors")
@click.option("--category", "category", metavar="CAT", default=None,
              help="Only the vendors a grant of this category allows, e.g. --category analytics.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def vendors_command(category: str | None, fmt: str) -> None:
    """List the vendor catalogue: declared services first, marked, then the rest."""
    registry = _registry()
    known = kit_state().settings.category_keys
    if category is not None and category not in known:
        # a catalogue category the app lacks: no visitor can grant it, so none of its
        # vendors is allowed for anyone
        why = (" (CONSENTKIT_CATEGORIES), so no visitor can grant it and the catalogue's "
               "vendors under it are allowed for nobody" if category in CATALOGUE_CATEGORIES
               else "")
        raise click.BadParameter(f"{category!r} is not a category of this app{why}; use one "
                                 f"of {', '.join(known)}.", param_hint="'--category'")
    declared = {s.key for s in registry.declared}
    everyone = [*registry.declared, *(v for v in registry.catalogue.vendors
                                      if v.key not in declared)]
    services = [s for s in everyone if category is None or category in s.categories]
    if fmt == "json":
        click.echo(json.dumps([vendor_json(s) for s in services], indent=2, ensure_ascii=False))
        return
    if not services:
        click.echo(f"No vendor under {category!r}." if category else "The catalogue is empty.")
        return
    click.echo(render_table(services), nl=False)
    count = sum(1 for s in services if s.declared)
    click.echo(f"\n{len(services)} vendor(s), {count} declared in CONSENTKIT_SERVICES.")
    if count == len(services):
        return
    if registry.undeclared:
        click.echo("A vendor not declared is allowed under its category too, but the "
                   "preferences page does not name it: declare the ones the site uses.")
    else:
        click.echo('A vendor not declared is allowed for nobody (CONSENTKIT_UNDECLARED_VENDORS '
                   '= "blocked"): declare the ones the site uses.')
