/**
 * Adapters from the launcher's ports to the runc runtime and the image manager.
 * @module
 */
import { AosError } from "@aos/shared/core";
import type { ImageManager } from "../image/mod.ts";
import type { ContainerRuntime } from "../runtime/mod.ts";
import type { ImagePort, RuntimePort } from "../core/launcher.ts";

/** The launcher's runtime port over a {@link ContainerRuntime}; layers come from the image store. */
export function runtimePort(runtime: ContainerRuntime, images: ImageManager): RuntimePort {
  return {
    async start(d) {
      const ident = d.info.instance!;
      const item = await images.getItem(ident.itemId, d.info.version);
      if (!item) {
        throw new AosError("notFound", `Item ${ident.itemId}@${d.info.version} is not installed`);
      }
      const status = await runtime.startInstance({
        ident: { itemId: ident.itemId, subjectId: ident.subjectId, instance: ident.instance },
        uid: d.info.uid,
        gid: d.info.gid,
        ...(d.info.storagePath ? { storagePath: d.info.storagePath } : {}),
        ...(d.info.statePath ? { statePath: d.info.statePath } : {}),
        envVars: d.info.envVars.map((e) => ({ name: e.name, value: e.value })),
        layers: item.layerPaths,
        ...(item.imageConfig?.config ? { imageConfig: item.imageConfig.config } : {}),
        ...(item.itemConfig ? { itemConfig: item.itemConfig } : {}),
      });
      return status.error ? { state: status.state, error: status.error } : { state: status.state };
    },
    stop: (id) => runtime.stopInstance(id),
    states: () =>
      new Map(
        runtime.listInstances().map((
          s,
        ) => [s.instanceId, s.error ? { state: s.state, error: s.error } : { state: s.state }]),
      ),
  };
}

/** The launcher's image port over the {@link ImageManager}. */
export function imagePort(images: ImageManager): ImagePort {
  return {
    install: async (info, signal) => {
      const ident = info.instance!;
      await images.installItem({
        itemId: ident.itemId,
        version: info.version,
        manifestDigest: info.manifestDigest,
      }, signal);
    },
    release: async (itemId, version) => {
      await images.removeItem(itemId, version);
    },
  };
}
