"""CloudFormation stack operations that take time, fail and can be cancelled.

moto creates, updates and deletes a stack (and creates a change set) within the call. Here, once moto has
done the work, the stack is put back to *_IN_PROGRESS (the change set to CREATE_IN_PROGRESS) and reaches
moto's final status `stack_seconds` later, on the ticker, with the events CloudFormation would add. Faults
(`/_sandbox/faults`, service "cloudformation", target = the stack name):
    fail   the operation fails: the first resource of the template gets CREATE_FAILED / UPDATE_FAILED and
           the stack ends ROLLBACK_COMPLETE (a create) or UPDATE_ROLLBACK_COMPLETE (an update)
    hang   the operation stays in progress until the fault is cleared, or an update is cancelled
Also answered here, since moto lacks them: CancelUpdateStack, and UpdateStack's refusals ("No updates are to
be performed." when neither the template nor the parameters change; a stack with an operation in progress). The rolled-back resources stay in moto.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs

from moto.cloudformation.models import Event

from include.sandbox.common import ApiError, backend, now, region_of
from include.sandbox.faults import Faults

# Operations whose work moto finishes at once, and the status they show while it "runs".
HELD = {
    "CreateStack": "CREATE_IN_PROGRESS",
    "UpdateStack": "UPDATE_IN_PROGRESS",
    "DeleteStack": "DELETE_IN_PROGRESS",
    "ExecuteChangeSet": None,  # CREATE_ or UPDATE_IN_PROGRESS, from the change set's type
    "CreateChangeSet": "CREATE_IN_PROGRESS",
}
XMLNS = "http://cloudformation.amazonaws.com/doc/2010-05-15/"


@dataclass
class Operation:
    region: str
    stack_id: str
    final: str  # moto's status once it did the work
    due: float
    token: str | None = None
    cancelled: bool = False


def form(body: bytes) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(body.decode(), keep_blank_values=True).items()}


def error_xml(code: str, message: str) -> bytes:
    return (
        f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()


def empty_xml(operation: str) -> bytes:
    return (
        f'<{operation}Response xmlns="{XMLNS}"><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>'
        f"</ResponseMetadata></{operation}Response>"
    ).encode()


class CloudFormationEmulator:
    def __init__(self, faults: Faults, stack_seconds: float):
        self.faults = faults
        self.stack_seconds = stack_seconds
        self.operations: dict[str, Operation] = {}  # stack id or change set id -> what runs on it

    def reset(self) -> None:
        self.operations.clear()

    def serve(self, body: bytes, environ, start_response, moto_app, lock) -> list[bytes]:
        """The WSGI answer to one CloudFormation request (`moto_app` answers what moto does)."""
        answered: dict = {}

        def moto() -> tuple[int, bytes]:
            def capture(status, headers, exc_info=None):
                answered.update(status=status, headers=headers)
                return lambda data: None

            data = moto_app(environ, capture)[0]
            return int(answered["status"].split()[0]), data

        with lock:  # moto's CloudFormation writes to other services' backends, which the ticker shares
            status, data = self.handle(body, region_of(environ), moto, now())
        if answered and answered["status"].startswith(str(status)):
            start_response(answered["status"], answered["headers"])
        else:
            headers = [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))]
            start_response(f"{status} {'OK' if status == 200 else 'Bad Request'}", headers)
        return [data]

    def handle(self, body: bytes, region: str, moto, at: float) -> tuple[int, bytes]:
        """Answer one CloudFormation request: ours, or moto's with the stack then held in progress."""
        params = form(body)
        action = params.get("Action", "")
        try:
            if action == "CancelUpdateStack":
                self.cancel(params["StackName"], region)
                return 200, empty_xml(action)
            if action == "UpdateStack":
                self.refuse_update(params, region)
        except ApiError as error:
            return error.status, error_xml(error.code, error.message)
        # The stack an operation concerns, looked up before moto runs it (a deleted stack loses its name).
        stack_id = None
        if action in ("UpdateStack", "DeleteStack"):
            stack_id = getattr(self._find(params.get("StackName", ""), region), "stack_id", None)
        status, answer = moto()
        if status == 200 and action in HELD:
            self.hold(action, params, region, at, stack_id)
        return status, answer

    def _find(self, name_or_id: str, region: str):
        try:
            return self._stack(name_or_id, region)
        except ApiError:
            return None

    # --- our answers ---

    def _stack(self, name_or_id: str, region: str):
        """moto's stack by id (deleted ones too) or by name (live ones only), as CloudFormation finds them."""
        cf = backend("cloudformation", region)
        found = cf.stacks.get(name_or_id) or cf.deleted_stacks.get(name_or_id)
        found = found or next((s for s in cf.stacks.values() if s.name == name_or_id), None)
        if found is None:
            raise ApiError("ValidationError", f"Stack with id {name_or_id} does not exist")
        return found

    def cancel(self, name: str, region: str) -> None:
        stack = self._stack(name, region)
        operation = self.operations.get(stack.stack_id)
        if stack.status != "UPDATE_IN_PROGRESS" or operation is None:
            raise ApiError(
                "ValidationError", f"CancelUpdateStack cannot be called from current stack status {stack.status}."
            )
        operation.cancelled = True
        operation.due = 0.0  # rolls back on the next tick

    def refuse_update(self, params: dict[str, str], region: str) -> None:
        stack = self._stack(params.get("StackName", ""), region)
        if stack.status.endswith("_IN_PROGRESS"):
            raise ApiError(
                "ValidationError", f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
            )
        given = {
            params[key]: params.get(key.replace("ParameterKey", "ParameterValue"), "")
            for key in params
            if key.startswith("Parameters.member.") and key.endswith(".ParameterKey")
        }
        if params.get("TemplateBody") == stack.template and given == dict(stack.parameters):
            raise ApiError("ValidationError", "No updates are to be performed.")

    # --- holding an operation in progress ---

    def hold(self, action: str, params: dict[str, str], region: str, at: float, stack_id: str | None) -> None:
        cf = backend("cloudformation", region)
        token = params.get("ClientRequestToken")
        if action == "CreateChangeSet":
            made = [  # the newest change set of that name on that stack
                c
                for c in cf.change_sets.values()
                if c.change_set_name == params.get("ChangeSetName")
                and getattr(self._find(c.stack_id, region), "name", None) == params.get("StackName")
            ]
            change_set = made[-1] if made else None
            if change_set is not None and self.stack_seconds > 0:
                self.operations[change_set.change_set_id] = Operation(
                    region, change_set.stack_id, change_set.status, at + self.stack_seconds
                )
                change_set.status = "CREATE_IN_PROGRESS"
            return
        if action == "ExecuteChangeSet":
            change_set = cf.describe_change_set(params["ChangeSetName"])
            stack_id, held = change_set.stack_id, f"{change_set.change_set_type}_IN_PROGRESS"
        else:
            held = HELD[action]
        stack = self._stack(stack_id or params["StackName"], region)
        for event in stack.events:
            event.client_request_token = event.client_request_token or token
        fault = self.faults.for_stack(stack.name)
        if self.stack_seconds <= 0 and not fault:
            return
        final_events = [e for e in stack.events if e.resource_status == stack.status]
        for event in final_events[-1:]:
            stack.events.remove(event)  # added again when the operation ends
        self.operations[stack.stack_id] = Operation(
            region, stack.stack_id, stack.status, at + self.stack_seconds, token
        )
        stack.status = held

    def tick(self, at: float) -> None:
        for item_id, operation in list(self.operations.items()):
            try:
                stack = self._stack(operation.stack_id, operation.region)
            except ApiError:
                del self.operations[item_id]
                continue
            if ":changeSet/" in item_id:
                if at >= operation.due:
                    backend("cloudformation", operation.region).change_sets[item_id].status = operation.final
                    del self.operations[item_id]
                continue
            fault = self.faults.for_stack(stack.name)
            if operation.cancelled:
                self.end(stack, operation, "UPDATE_ROLLBACK_COMPLETE", "Resource update cancelled")
            elif fault and fault["mode"] == "hang":
                continue
            elif at < operation.due:
                continue
            elif fault and fault["mode"] == "fail" and stack.status in ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS"):
                create = stack.status == "CREATE_IN_PROGRESS"
                final = "ROLLBACK_COMPLETE" if create else "UPDATE_ROLLBACK_COMPLETE"
                self.end(stack, operation, final, "Resource handler returned message: \"sandbox fault 'fail'\"")
            else:
                self.end(stack, operation, operation.final, None)
            del self.operations[item_id]

    def end(self, stack, operation: Operation, final: str, failure: str | None) -> None:
        def event(status: str, reason: str | None, logical_id: str | None = None, kind: str | None = None) -> None:
            e = Event(
                stack.stack_id,
                stack.name,
                logical_id or stack.name,
                stack.stack_id if logical_id is None else f"{logical_id}-sandbox",
                kind or "AWS::CloudFormation::Stack",
                status,
                reason,
                None,
            )
            e.client_request_token = operation.token
            stack.events.append(e)

        if failure:
            verb = "CREATE" if stack.status == "CREATE_IN_PROGRESS" else "UPDATE"
            resources = stack.template_dict.get("Resources") or {}
            logical_id, resource = next(iter(resources.items()), ("Resource", {}))
            event(f"{verb}_FAILED", failure, logical_id, resource.get("Type", "AWS::CloudFormation::CustomResource"))
            rollback = "ROLLBACK_IN_PROGRESS" if verb == "CREATE" else "UPDATE_ROLLBACK_IN_PROGRESS"
            event(rollback, f"The following resource(s) failed to {verb.lower()}: [{logical_id}]. ")
        stack.status = final
        event(final, None)
