/**
 * A typed view of the parts of `npm:ws` the link uses (the package ships no types).
 * @module
 */
import { toBytes } from "@aos/shared/core";
import { WebSocket as WsWebSocket } from "ws";
import type { Buffer } from "node:buffer";

/** Raw data of a `message` event (`ws` default `binaryType` "nodebuffer"). */
export type WsData = Buffer | ArrayBuffer | Buffer[];

/** The client socket API used here. */
export interface WsClient {
  readonly readyState: number;
  send(data: Uint8Array, options: { binary: boolean }, cb: (err?: Error) => void): void;
  ping(): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  on(event: "open", fn: () => void): this;
  on(event: "message", fn: (data: WsData, isBinary: boolean) => void): this;
  on(event: "ping" | "pong", fn: () => void): this;
  on(event: "close", fn: (code: number, reason: Buffer) => void): this;
  on(event: "error", fn: (err: Error) => void): this;
  off(event: string, fn: (...args: never[]) => void): this;
}

/** `readyState` OPEN. */
export const WS_OPEN = 1;

/** Options passed through to `ws`. */
export interface WsClientOptions {
  /** CA bundle (PEM) that verifies the server. */
  ca: string;
  /** Client certificate chain (PEM). */
  cert: string;
  /** Client key (PEM). */
  key: string;
  /** Extra upgrade request headers. */
  headers: Record<string, string>;
  /** Largest accepted message; `ws` closes with 1009 beyond it. */
  maxPayload: number;
  /** Upgrade deadline in ms. */
  handshakeTimeout: number;
}

/** Starts a client connection (events tell how it goes). */
export function openWs(url: string, options: WsClientOptions): WsClient {
  return new WsWebSocket(url, {
    ...options,
    // AosCore offers no extension and follows no redirect: neither do we.
    perMessageDeflate: false,
    followRedirects: false,
  }) as WsClient;
}

/** Copies a `message` payload into one Uint8Array. */
export function wsBytes(data: WsData): Uint8Array {
  return toBytes(data);
}
