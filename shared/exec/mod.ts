/**
 * Running external programs through one port.
 *
 * Every module that spawns a program takes a {@link CommandRunner}. The real
 * {@link DenoCommandRunner} is built with an explicit allow-list, so the binaries a component
 * may start are named in one place (and match its `--allow-run` grant); it bounds captured
 * output, kills on timeout or abort, and turns a non-zero exit into an `AosError`.
 * {@link RecordingRunner} records calls for pure tests of argument building.
 * @module
 */
export * from "./runner.ts";
export * from "./fake_runner.ts";
