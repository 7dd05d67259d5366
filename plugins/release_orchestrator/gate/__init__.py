"""The approval gate: only an allowed approver decides an approval, by any path.

- `policy`: who may decide (the action's `approvers`, by user name or `role:<name>`; never the person
  who started the run unless `allow_self_approval`), and the check every later action makes before
  it runs (an approval counts only with a decision recorded by the gate, the form or the trigger).
- `enforcement`: runs in the api-server. A root middleware notes who is making each changing request
  to Airflow's REST API and UI; a database hook looks at what the request is about to write. Marking
  an approval task success or failed, answering its form, or writing its XComs is refused (HTTP 403,
  recorded in the audit log) unless the user may decide; an allowed decision is recorded with the
  reviewer (XCom `approval_decision`, the action's outputs, the audit log) in the same transaction.

Because the database hook sees the writes rather than the URLs, every REST path that changes the
task's state (one task, bulk, a task group, "include downstream" from an earlier task, a whole run)
meets the same rule. docs/security.md has the threat model.
"""
