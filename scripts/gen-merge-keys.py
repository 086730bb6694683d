#!/usr/bin/env python3
"""Generate src/kustomize/merge_keys.json from a Kubernetes OpenAPI v2 document.

The strategic merge patch needs, for every built-in kind, which list fields
merge by a key (x-kubernetes-patch-merge-key / x-kubernetes-patch-strategy)
and which kinds are cluster-scoped (namespace transformer, name references).
This script keeps only that from /openapi/v2 so the build never needs a
cluster.

Usage:
  kubectl --kubeconfig KUBECONFIG get --raw /openapi/v2 > /tmp/openapi.json
  scripts/gen-merge-keys.py /tmp/openapi.json > src/kustomize/merge_keys.json
or, with a running test control plane, scripts/gen-merge-keys.sh.
"""
import json
import sys


def ref_name(schema):
    ref = schema.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else None


def field_info(prop):
    """What the merge needs of one property, or None if it is a plain scalar."""
    info = {}
    if prop.get("type") == "array":
        info["list"] = True
        item = ref_name(prop.get("items", {}))
        if item:
            info["items"] = item
    else:
        target = ref_name(prop) or ref_name((prop.get("allOf") or [{}])[0])
        if target:
            info["ref"] = target
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict) and ref_name(extra):
            info["values"] = ref_name(extra)
    if "x-kubernetes-patch-merge-key" in prop:
        info["key"] = prop["x-kubernetes-patch-merge-key"]
    if "x-kubernetes-list-map-keys" in prop:
        info["mapKeys"] = prop["x-kubernetes-list-map-keys"]
    if "x-kubernetes-patch-strategy" in prop:
        info["strategy"] = prop["x-kubernetes-patch-strategy"]
    return info or None


def main():
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    definitions = {}
    roots = {}
    for name, schema in sorted(doc.get("definitions", {}).items()):
        fields = {}
        for field, prop in sorted(schema.get("properties", {}).items()):
            info = field_info(prop)
            if info:
                fields[field] = info
        if fields:
            definitions[name] = fields
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            key = "/".join(p for p in (gvk["group"], gvk["version"]) if p) + "/" + gvk["kind"]
            roots.setdefault(key, name)
    json.dump(
        {
            "roots": dict(sorted(roots.items())),
            "definitions": definitions,
        },
        sys.stdout,
        indent=0,
        sort_keys=True,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
