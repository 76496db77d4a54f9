/**
 * The launcher's desired-instance store on `servicemanager.db` (table `instances`).
 * @module
 */
import { InstanceInfo } from "@aos/proto/servicemanager/v5/servicemanager.ts";
import type { Database } from "@aos/shared/db";
import type { DesiredInstance, InstanceStore } from "../core/launcher.ts";

/** Desired instances persisted as protobuf `InstanceInfo` rows. */
export class SqliteInstanceStore implements InstanceStore {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  list(): DesiredInstance[] {
    const rows = this.#db.prepare(
      "SELECT instanceID, info FROM instances ORDER BY itemID, subjectID, instance",
    )
      .all() as { instanceID: string; info: Uint8Array }[];
    return rows.map((r) => ({
      instanceId: r.instanceID,
      info: InstanceInfo.decode(new Uint8Array(r.info)),
    }));
  }

  put(d: DesiredInstance): void {
    const i = d.info.instance!;
    this.#db.prepare(
      "INSERT OR REPLACE INTO instances (instanceID, itemID, subjectID, instance, info) VALUES (?, ?, ?, ?, ?)",
    ).run(d.instanceId, i.itemId, i.subjectId, i.instance, InstanceInfo.encode(d.info).finish());
  }

  remove(instanceId: string): void {
    this.#db.prepare("DELETE FROM instances WHERE instanceID = ?").run(instanceId);
  }
}
