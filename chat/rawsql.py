"""The statements a turn runs on its hot path, as plain SQL (docs/benchmarks.md, finding 16).

Django's ORM builds every query, and a model instance for every row it writes or reads, anew:
~0.2–0.3 ms of CPU a statement on the reference box, against ~0.02 ms for the same statement
through a cursor. A turn writes the same few rows every time (its Turn row and status, the user
message, each step's chunks and search entries, the seal and its metrics), and each start in a
burst waits behind every other start's, so those statements run here. They go through Django's
connection all the same: its transaction, its execute wrappers, its error types; values are
adapted by the model's fields, so SQLite and PostgreSQL store exactly what the ORM would, and
a row read by ``get`` is a model instance with the ORM's converters applied (``objects.raw``).
Everything else stays in the ORM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.utils import timezone


def _db():
    """This thread's connection. ``django.db.connection`` is a proxy that looks it up again
    on every attribute read, and adapting a row's values reads it for every field."""
    return connections[DEFAULT_DB_ALIAS]


def quoted(name: str) -> str:
    """An identifier, quoted the way both SQLite and PostgreSQL accept."""
    return f'"{name}"'


def for_update() -> str:
    """`` FOR UPDATE`` where the database has row locks (PostgreSQL; SQLite's writer lock is
    the whole database, taken by the transaction)."""
    return " FOR UPDATE" if _db().features.has_select_for_update else ""


def at(value) -> Any:
    """A datetime as a DateTimeField stores it."""
    return _db().ops.adapt_datetimefield_value(value)


def run(sql: str, params: Sequence = ()) -> int:
    """Execute one statement; the number of rows it changed."""
    with _db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def one(sql: str, params: Sequence = ()) -> tuple | None:
    """The first row of a query, or None."""
    with _db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def rows(sql: str, params: Sequence = ()) -> list[tuple]:
    with _db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


_BY_PK: dict[type[models.Model], str] = {}
_UPDATES: dict[tuple, tuple[str, list[models.Field]]] = {}


def update(model: type[models.Model], pk, /, **fields) -> int:
    """``UPDATE`` the model's row with that primary key: ``fields`` by attribute name, their
    values adapted by the fields. The number of rows changed (0 or 1)."""
    key = (model, *fields)
    found = _UPDATES.get(key)
    if found is None:
        meta = model._meta
        targets = [meta.get_field(name) for name in fields]
        assignments = ", ".join(f"{quoted(field.column)} = %s" for field in targets)
        sql = (
            f"UPDATE {quoted(meta.db_table)} SET {assignments} WHERE {quoted(meta.pk.column)} = %s"
        )
        found = _UPDATES[key] = (sql, targets)
    sql, targets = found
    db = _db()
    values = [
        field.get_db_prep_save(v, db) for field, v in zip(targets, fields.values(), strict=True)
    ]
    return run(sql, [*values, pk])


def get(model: type[models.Model], pk) -> models.Model | None:
    """The model's row with that primary key, or None: ``objects.filter(pk=…).first()``
    without building the query each time (a third of the CPU). Every turn start reads its
    conversation so, twice."""
    sql = _BY_PK.get(model)
    if sql is None:
        meta = model._meta
        columns = ", ".join(quoted(f.column) for f in meta.concrete_fields)
        sql = _BY_PK[model] = (
            f"SELECT {columns} FROM {quoted(meta.db_table)} WHERE {quoted(meta.pk.column)} = %s"
        )
    return next(iter(model.objects.raw(sql, [pk])), None)


class Insert:
    """``INSERT INTO`` a model's table: ``values(**fields)`` is one row, fields named by their
    attribute (``conversation_id``); a field left out gets what the ORM would give it — its
    default, or now for ``auto_now``/``auto_now_add``. Values are adapted by the fields."""

    def __init__(self, model: type[models.Model], *, returning: str | None = None) -> None:
        self.model, self.returning = model, returning
        self._fields: list[models.Field] | None = None
        self._sql = ""

    def _prepare(self) -> list[models.Field]:
        if self._fields is None:
            meta = self.model._meta
            fields = [
                f
                for f in meta.concrete_fields
                if not (f.primary_key and isinstance(f, models.AutoField | models.BigAutoField))
            ]
            columns = ", ".join(quoted(f.column) for f in fields)
            marks = ", ".join(["%s"] * len(fields))
            self._sql = f"INSERT INTO {quoted(meta.db_table)} ({columns}) VALUES ({marks})"
            self._fields = fields
        return self._fields

    def values(self, now=None, **given) -> list:
        now = now or timezone.now()
        db = _db()
        out = []
        for field in self._prepare():
            if field.attname in given:
                value = given[field.attname]
            elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
                value = now
            else:
                value = field.get_default()
            out.append(field.get_db_prep_save(value, db))
        return out

    def of(self, instance: models.Model) -> list:
        """A row of ``instance``'s values (``auto_now`` fields set now, ``auto_now_add`` ones
        if unset); the instance is then the saved row's, as ``objects.create`` leaves it."""
        given = {}
        now = timezone.now()
        for field in self._prepare():
            value = getattr(instance, field.attname)
            if getattr(field, "auto_now", False) or (
                value is None and getattr(field, "auto_now_add", False)
            ):
                value = now
                setattr(instance, field.attname, value)
            given[field.attname] = value
        instance._state.adding = False
        instance._state.db = DEFAULT_DB_ALIAS
        return self.values(now, **given)

    def many(self, rows: Iterable[list]) -> None:
        """Insert rows made by ``values``."""
        rows = list(rows)
        if rows:
            with _db().cursor() as cursor:
                cursor.executemany(self._sql, rows)

    def new(self, row: list) -> bool:
        """Insert one row made by ``values`` unless its key is taken (``ON CONFLICT DO
        NOTHING``: no error, so no savepoint, on SQLite and PostgreSQL alike); whether it was
        inserted."""
        with _db().cursor() as cursor:
            cursor.execute(f"{self._sql} ON CONFLICT DO NOTHING", row)
            return cursor.rowcount == 1

    def one(self, row: list) -> Any:
        """Insert one row made by ``values``; the ``returning`` column's value, if named."""
        db = _db()
        with db.cursor() as cursor:
            if self.returning is None:
                cursor.execute(self._sql, row)
                return None
            column = self.model._meta.get_field(self.returning).column
            if db.features.can_return_columns_from_insert:
                cursor.execute(f"{self._sql} RETURNING {quoted(column)}", row)
                return cursor.fetchone()[0]
            cursor.execute(self._sql, row)
            return db.ops.last_insert_id(cursor, self.model._meta.db_table, column)
