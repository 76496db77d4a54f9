/**
 * The launcher's desired-instance store on `servicemanager.db` (table `instances`).
 * @module
 */
import { InstanceInfo } from "@aos/proto/servicemanager/v5/servicemanager.ts";
import type { Database } from "@aos/shared/db";
import type { StatementSync } from "node:sqlite";
import type { DesiredInstance, InstanceStore } from "../core/launcher.ts";

const LIST = "SELECT instanceID, info FROM instances ORDER BY itemID, subjectID, instance";
const PUT =
  "INSERT OR REPLACE INTO instances (instanceID, itemID, subjectID, instance, info) VALUES (?, ?, ?, ?, ?)";
const REMOVE = "DELETE FROM instances WHERE instanceID = ?";

/**
 * Desired instances persisted as protobuf `InstanceInfo` rows. Every `update_instances` lists
 * and writes the table a few times, so the statements are compiled once (~50 µs each otherwise).
 */
export class SqliteInstanceStore implements InstanceStore {
  readonly #db: Database;
  readonly #statements = new Map<string, StatementSync>();

  constructor(db: Database) {
    this.#db = db;
  }

  #statement(sql: string): StatementSync {
    let st = this.#statements.get(sql);
    if (!st) this.#statements.set(sql, st = this.#db.prepare(sql));
    return st;
  }

  list(): DesiredInstance[] {
    const rows = this.#statement(LIST).all() as { instanceID: string; info: Uint8Array }[];
    return rows.map((r) => ({
      instanceId: r.instanceID,
      info: InstanceInfo.decode(new Uint8Array(r.info)),
    }));
  }

  put(d: DesiredInstance): void {
    const i = d.info.instance!;
    this.#statement(PUT).run(
      d.instanceId,
      i.itemId,
      i.subjectId,
      i.instance,
      InstanceInfo.encode(d.info).finish(),
    );
  }

  remove(instanceId: string): void {
    this.#statement(REMOVE).run(instanceId);
  }
}
