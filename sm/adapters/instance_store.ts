/**
 * The launcher's desired-instance store on `servicemanager.db` (table `instances`).
 * @module
 */
import { InstanceInfo } from "@aos/proto/servicemanager/v5/servicemanager.ts";
import { bytesEqual } from "@aos/shared/core";
import type { Database } from "@aos/shared/db";
import type { StatementSync } from "node:sqlite";
import type { DesiredChange, DesiredInstance, InstanceStore } from "../core/launcher.ts";

const LIST = "SELECT instanceID, info FROM instances";
const PUT =
  "INSERT OR REPLACE INTO instances (instanceID, itemID, subjectID, instance, info) VALUES (?, ?, ?, ?, ?)";
const REMOVE = "DELETE FROM instances WHERE instanceID = ?";

interface Row {
  desired: DesiredInstance;
  /** The stored protobuf bytes, to skip rewriting an unchanged row. */
  bytes: Uint8Array;
}

/**
 * Desired instances persisted as protobuf `InstanceInfo` rows. The SM is the only writer of its
 * database, so the rows are read once and kept in memory: every `update_instances` lists the set
 * several times (the plan, the snapshot). A change is one transaction, and rows whose bytes did
 * not change are not written (the CM resends its whole desired set with every update).
 */
export class SqliteInstanceStore implements InstanceStore {
  readonly #db: Database;
  readonly #statements = new Map<string, StatementSync>();
  #rows: Map<string, Row> | undefined;
  #sorted: DesiredInstance[] | undefined;

  constructor(db: Database) {
    this.#db = db;
  }

  #statement(sql: string): StatementSync {
    let st = this.#statements.get(sql);
    if (!st) this.#statements.set(sql, st = this.#db.prepare(sql));
    return st;
  }

  #loaded(): Map<string, Row> {
    if (this.#rows) return this.#rows;
    const rows = this.#statement(LIST).all() as { instanceID: string; info: Uint8Array }[];
    this.#rows = new Map(rows.map((r) => {
      const bytes = new Uint8Array(r.info);
      return [r.instanceID, {
        desired: { instanceId: r.instanceID, info: InstanceInfo.decode(bytes) },
        bytes,
      }];
    }));
    return this.#rows;
  }

  list(): DesiredInstance[] {
    this.#sorted ??= [...this.#loaded().values()].map((r) => r.desired).sort(byIdent);
    return [...this.#sorted];
  }

  apply(change: DesiredChange): void {
    const rows = this.#loaded();
    const next = new Map(rows);
    const writes: Row[] = [];
    const removes: string[] = [];
    for (const id of change.remove ?? []) {
      if (next.delete(id)) removes.push(id);
    }
    for (const desired of change.put ?? []) {
      const bytes = InstanceInfo.encode(desired.info).finish();
      const old = next.get(desired.instanceId);
      const row = { desired, bytes };
      next.set(desired.instanceId, row);
      if (!old || !bytesEqual(old.bytes, bytes)) writes.push(row);
    }
    if (!writes.length && !removes.length) return;
    this.#db.transaction(() => {
      for (const id of removes) {
        if (!next.has(id)) this.#statement(REMOVE).run(id);
      }
      for (const { desired, bytes } of writes) {
        const i = desired.info.instance!;
        this.#statement(PUT).run(desired.instanceId, i.itemId, i.subjectId, i.instance, bytes);
      }
    });
    this.#rows = next;
    this.#sorted = undefined;
  }
}

function byIdent(a: DesiredInstance, b: DesiredInstance): number {
  const x = a.info.instance!;
  const y = b.info.instance!;
  if (x.itemId !== y.itemId) return x.itemId < y.itemId ? -1 : 1;
  if (x.subjectId !== y.subjectId) return x.subjectId < y.subjectId ? -1 : 1;
  return x.instance === y.instance ? 0 : x.instance < y.instance ? -1 : 1;
}
