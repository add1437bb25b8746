"""Tasks of the example order flow: validate an order, reserve its stock, pick shipping, confirm.

`selinon run` puts this directory on the Python path, so the YAML names this module as `import: order_tasks`.
"""

from __future__ import annotations

from typing import Any

from selinon import SelinonMissingDataException
from selinon.task import SelinonTask


class WarehouseBusyError(Exception):
    pass


class ValidateOrder(SelinonTask):
    """Checks the order and prices it; an order without items fails the flow (its error is stored)."""

    def run(self, node_args: Any) -> dict[str, Any]:
        items = node_args.get("items") or []
        if not items:
            raise ValueError(f"order {node_args.get('order')} has no items")
        total = round(sum(item["price"] * item["quantity"] for item in items), 2)
        return {
            "order": node_args["order"],
            "items": sum(item["quantity"] for item in items),
            "total": total,
            "express": bool(node_args.get("express")),
        }


class ReserveStock(SelinonTask):
    """Reserves the items; the simulated warehouse answers "busy" to the first request for an order, so the task
    is retried.

    Whether it answered already is kept where every worker sees it: a marker record in the task's storage, beside
    its result (task name ``WarehouseBusy``). A retry may run in another process, or on another machine.
    """

    def run(self, node_args: Any) -> dict[str, Any]:
        storage, marker = self.storage, f"{self.task_id}-warehouse-busy"
        assert storage is not None, "ReserveStock needs a storage (nodes.yaml)"
        try:
            storage.retrieve(self.flow_name, "WarehouseBusy", marker)
        except SelinonMissingDataException:  # the first request: the warehouse is busy
            storage.store(node_args, self.flow_name, "WarehouseBusy", marker, {"answered": "busy"})
            raise WarehouseBusyError("the warehouse is busy; try again shortly") from None
        order = self.parent_task_result("ValidateOrder")
        return {"order": order["order"], "reserved": order["items"], "reservation": f"R-{order['order']}"}


class ExpressShipping(SelinonTask):
    def run(self, node_args: Any) -> dict[str, Any]:
        return {"carrier": "courier", "days": 1, "cost": 9.9}


class StandardShipping(SelinonTask):
    def run(self, node_args: Any) -> dict[str, Any]:
        order = self.parent_task_result("ValidateOrder")
        return {"carrier": "post", "days": 4, "cost": 0.0 if order["total"] >= 50 else 4.5}


class Confirm(SelinonTask):
    """Joins the reservation and whichever shipping branch ran."""

    def run(self, node_args: Any) -> dict[str, Any]:
        stock = self.parent_task_result("ReserveStock")
        branch = "ExpressShipping" if "ExpressShipping" in self.parent else "StandardShipping"
        shipping = self.parent_task_result(branch)
        days = shipping["days"]
        return {
            "order": stock["order"],
            "reservation": stock["reservation"],
            "message": (
                f"{stock['reserved']} item(s) reserved; shipping by {shipping['carrier']} "
                f"({shipping['cost']:.2f}), arriving in {days} day{'s' if days != 1 else ''}"
            ),
        }
