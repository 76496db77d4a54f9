/**
 * `iamanager.db`: certificate metadata and the node registry (SQLite, versioned migrations).
 * @module
 */
import { type Database, type Migration, openDatabase } from "@aos/shared/db";
import type { Logger } from "@aos/shared/logger";
import type { CertInfo } from "../core/types.ts";

/** Schema of `iamanager.db` (upstream tables, our migration numbering). */
export const IAM_MIGRATIONS: Migration[] = [
  {
    version: 1,
    up: `
      CREATE TABLE certificates (
        type TEXT NOT NULL,
        issuer BLOB NOT NULL,
        serial BLOB NOT NULL,
        certURL TEXT,
        keyURL TEXT,
        notAfter INTEGER,
        PRIMARY KEY (issuer, serial)
      );
      CREATE TABLE nodeinfo (id TEXT NOT NULL PRIMARY KEY, info TEXT);`,
    down: "DROP TABLE certificates; DROP TABLE nodeinfo;",
  },
];

interface CertRow {
  type: string;
  issuer: Uint8Array;
  serial: Uint8Array;
  certURL: string;
  keyURL: string;
  notAfter: number | bigint;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function toCertInfo(r: CertRow): CertInfo {
  // notAfter is stored in Unix nanoseconds as upstream does.
  return {
    type: r.type,
    issuer: new Uint8Array(r.issuer),
    serial: decoder.decode(r.serial),
    certUrl: r.certURL,
    keyUrl: r.keyURL,
    notAfter: new Date(Number(BigInt(r.notAfter) / 1_000_000n)),
  };
}

/** The IAM database. */
export class IamDatabase implements Disposable {
  readonly db: Database;

  private constructor(db: Database) {
    this.db = db;
  }

  /** Opens (and migrates) `<workingDir>/iamanager.db`. */
  static open(path: string, logger?: Logger): IamDatabase {
    return new IamDatabase(
      openDatabase({ path, migrations: IAM_MIGRATIONS, ...(logger ? { logger } : {}) }),
    );
  }

  /** Adds (or replaces) a certificate row. */
  addCert(info: CertInfo): void {
    this.db.prepare(
      "INSERT OR REPLACE INTO certificates (type, issuer, serial, certURL, keyURL, notAfter) VALUES (?, ?, ?, ?, ?, ?)",
    ).run(
      info.type,
      info.issuer,
      encoder.encode(info.serial),
      info.certUrl,
      info.keyUrl,
      BigInt(info.notAfter.getTime()) * 1_000_000n,
    );
  }

  /** Removes a certificate row. */
  removeCert(issuer: Uint8Array, serial: string): void {
    this.db.prepare("DELETE FROM certificates WHERE issuer = ? AND serial = ?").run(
      issuer,
      encoder.encode(serial),
    );
  }

  /** Removes every row of a cert type. */
  removeCertsOfType(type: string): void {
    this.db.prepare("DELETE FROM certificates WHERE type = ?").run(type);
  }

  /** Certificates of a type, newest `notAfter` first. */
  certsOfType(type: string): CertInfo[] {
    const rows = this.#certQuery("SELECT * FROM certificates WHERE type = ? ORDER BY notAfter DESC")
      .all(type) as unknown as CertRow[];
    return rows.map(toCertInfo);
  }

  /** One certificate by issuer and serial. */
  certByIssuerSerial(issuer: Uint8Array, serial: string): CertInfo | undefined {
    const row = this.#certQuery("SELECT * FROM certificates WHERE issuer = ? AND serial = ?")
      .get(issuer, encoder.encode(serial)) as unknown as CertRow | undefined;
    return row ? toCertInfo(row) : undefined;
  }

  /** A statement reading certificate rows: notAfter (Unix ns) needs 64-bit integers. */
  #certQuery(sql: string) {
    const stmt = this.db.prepare(sql);
    stmt.setReadBigInts(true);
    return stmt;
  }

  /** Stored node infos (JSON text per node ID). */
  loadNodes(): Map<string, string> {
    const rows = this.db.prepare("SELECT id, info FROM nodeinfo").all() as {
      id: string;
      info: string;
    }[];
    return new Map(rows.map((r) => [r.id, r.info]));
  }

  /** Stores a node's info JSON. */
  saveNode(id: string, info: string): void {
    this.db.prepare("INSERT OR REPLACE INTO nodeinfo (id, info) VALUES (?, ?)").run(id, info);
  }

  /** Removes a node. */
  removeNode(id: string): void {
    this.db.prepare("DELETE FROM nodeinfo WHERE id = ?").run(id);
  }

  [Symbol.dispose](): void {
    this.db.close();
  }
}
