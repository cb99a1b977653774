"""Receipts written in the shapes of two published consent-record formats.

``dpv``
    A consent record of ISO/IEC TS 27560:2023 in JSON-LD with the W3C Data
    Privacy Vocabulary, following the DPVCG's guide "Consent Records and
    Receipts as per ISO/IEC TS 27560:2023 using DPV"
    (https://w3id.org/dpv/guides/consent-27560): one ``dpv:ConsentRecord`` per
    receipt, one ``dpv:Process`` per category with its ``dpv:hasConsentStatus``
    (given, refused or withdrawn), the controller, the notice the visitor
    decided under and the privacy policy.
``kantara``
    A Kantara Initiative Consent Receipt v1.1
    (https://kantarainitiative.org/file-downloads/consent-receipt-specification-v1-1-0/):
    the consent given in one receipt, the controller, the policy and one
    service per granted category with its purpose and the third parties it
    discloses to.

Both are built from what the ledger keeps — a receipt (``store.public``) and
the notice it names (``notices``) — and add nothing the visitor did not see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

FORMATS = ("json", "dpv", "kantara")

_DPV_CONTEXT = {
    "dpv": "https://w3id.org/dpv#",
    "dct": "http://purl.org/dc/terms/",
    "schema": "https://schema.org/",
}
_STATUS = {"given": "dpv:ConsentGiven", "refused": "dpv:ConsentRefused",
           "withdrawn": "dpv:ConsentWithdrawn"}
_METHOD = {"banner": "the cookie banner", "preferences": "the cookie preferences page",
           "api": "the consent API", "gpc": "the browser's Global Privacy Control signal"}


def _categories(notice: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    if not notice:
        return {}
    return {c["key"]: c for c in notice.get("categories", ()) if isinstance(c, Mapping)}


def _status(receipt: Mapping[str, Any], key: str) -> str:
    if key in receipt["withdrawn"]:
        return "withdrawn"
    return "given" if key in receipt["granted"] else "refused"


def _controller(notice: Mapping[str, Any] | None) -> Mapping[str, Any]:
    found = (notice or {}).get("controller")
    return found if isinstance(found, Mapping) else {}


def to_dpv(receipt: Mapping[str, Any], notice: Mapping[str, Any] | None,
           consent_id: str | None = None) -> dict[str, Any]:
    """One receipt (of ``consent_id``) as an ISO/IEC TS 27560 consent record in DPV."""
    categories = _categories(notice)
    controller = _controller(notice)
    policy = (notice or {}).get("policy") or {}
    keys = sorted(set(receipt["granted"]) | set(receipt["denied"]) | set(receipt["withdrawn"]))
    processes = []
    for key in keys:
        category = categories.get(key, {})
        services = [s for s in category.get("services", ()) if isinstance(s, Mapping)]
        process: dict[str, Any] = {
            "@type": "dpv:Process",
            "dct:identifier": key,
            "dpv:hasPurpose": {"@type": "dpv:Purpose",
                               "dct:title": category.get("name", key),
                               "dct:description": category.get("description")},
            "dpv:hasConsentStatus": _STATUS[_status(receipt, key)],
            "dpv:hasNecessity": "dpv:Required" if category.get("required") else "dpv:Optional",
        }
        if services:
            process["dpv:hasRecipient"] = [
                {"@type": "dpv:ThirdParty", "schema:name": s.get("name"),
                 "dpv:hasLocation": list(s.get("countries") or ())} for s in services]
        processes.append(process)
    subject = consent_id or receipt.get("consent_id")
    record: dict[str, Any] = {
        "@context": _DPV_CONTEXT,
        "@id": f"urn:uuid:{receipt['receipt_id']}",
        "@type": "dpv:ConsentRecord",
        "dct:identifier": receipt["receipt_id"],
        "dct:conformsTo": "https://w3id.org/dpv/schema/iso-27560#record",
        "dct:created": receipt["created_at"],
        "dpv:hasDataSubject": ({"@type": "dpv:DataSubject", "dct:identifier": subject}
                               if subject else None),
        "dpv:hasDataController": {
            "@type": "dpv:DataController",
            "schema:name": controller.get("name"),
            "schema:address": controller.get("address"),
            "schema:email": controller.get("email"),
            "schema:telephone": controller.get("phone"),
        } if controller else None,
        "dpv:hasIndicationMethod": _METHOD.get(receipt["method"], receipt["method"]),
        "dpv:hasNotice": {
            "@type": "dpv:ConsentNotice",
            "dct:identifier": receipt.get("notice_id") or receipt.get("banner_hash"),
            "dct:language": receipt.get("language"),
        },
        "dpv:hasPolicy": {"@id": policy.get("url"), "dct:hasVersion":
                          receipt["policy_version"], "dct:valid": policy.get("effective")},
        "dpv:hasProcess": processes,
    }
    if receipt.get("previous_receipt_id"):
        record["dct:replaces"] = f"urn:uuid:{receipt['previous_receipt_id']}"
    if receipt.get("rule"):
        record["dpv:hasApplicableLaw"] = receipt["rule"]
    return record


def to_kantara(receipt: Mapping[str, Any], notice: Mapping[str, Any] | None,
               consent_id: str | None = None) -> dict[str, Any]:
    """One receipt (of ``consent_id``) as a Kantara Initiative Consent Receipt v1.1."""
    categories = _categories(notice)
    controller = _controller(notice)
    policy = (notice or {}).get("policy") or {}
    created = datetime.fromisoformat(receipt["created_at"].removesuffix("Z") + "+00:00")
    services = []
    for key in receipt["granted"]:
        category = categories.get(key, {})
        parties = [str(s["name"]) for s in category.get("services", ())
                   if isinstance(s, Mapping) and s.get("name")]
        services.append({
            "service": category.get("name", key),
            "purposes": [{
                "purpose": category.get("description") or category.get("name", key),
                "purposeCategory": [key],
                "consentType": "EXPLICIT" if receipt["method"] != "gpc" else "IMPLICIT",
                "piiCategory": [],
                "primaryPurpose": bool(category.get("required")),
                "termination": "until withdrawn in the cookie settings, or when the "
                               "consent cookie expires",
                "thirdPartyDisclosure": bool(parties),
                "thirdPartyName": ", ".join(parties) if parties else None,
            }],
        })
    return {
        "version": "KI-CR-v1.1.0",
        "jurisdiction": receipt.get("country") or "",
        "consentTimestamp": int(created.timestamp()),
        "collectionMethod": _METHOD.get(receipt["method"], receipt["method"]),
        "consentReceiptID": receipt["receipt_id"],
        "language": receipt.get("language") or "",
        "piiPrincipalId": consent_id or receipt.get("consent_id") or "",
        "piiControllers": [{
            "piiController": controller.get("name"),
            "contact": controller.get("name"),
            "address": controller.get("address"),
            "email": controller.get("email"),
            "phone": controller.get("phone"),
            "piiControllerUrl": controller.get("url"),
        }] if controller else [],
        "policyUrl": policy.get("url") or "",
        "services": services,
        "sensitive": False,
        "spiCat": [],
    }


def render(receipts: Sequence[Mapping[str, Any]], notices: Mapping[str, Any],
           fmt: str, consent_id: str | None = None) -> list[dict[str, Any]]:
    """Each receipt of ``consent_id`` in format ``fmt`` (``dpv`` or ``kantara``);
    ``notices`` by id."""
    convert = to_dpv if fmt == "dpv" else to_kantara
    return [convert(r, notices.get(r.get("notice_id") or r.get("banner_hash") or ""),
                    consent_id) for r in receipts]
