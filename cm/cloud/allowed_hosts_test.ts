import assert from "node:assert/strict";
import { AosError } from "@aos/shared/core";
import { hostAllowed, linkAllowList, parseHostPattern, urlHostPort } from "./allowed_hosts.ts";

Deno.test({
  name: "hostAllowed: exact hosts, wildcards, ports",
  permissions: "none",
  fn() {
    const patterns = ["cloud.example.com", "*.blobs.example.net", "sd.example.org:9000"];
    assert.ok(hostAllowed("wss://cloud.example.com/ws", patterns));
    assert.ok(hostAllowed("https://CLOUD.example.com:8443/x", patterns)); // any port
    assert.ok(hostAllowed("https://cloud.example.com./x", patterns)); // trailing dot
    assert.ok(!hostAllowed("https://evil-cloud.example.com/", patterns));
    assert.ok(!hostAllowed("https://cloud.example.com.evil.io/", patterns));
    assert.ok(hostAllowed("https://a.blobs.example.net/x", patterns));
    assert.ok(hostAllowed("https://a.b.blobs.example.net/x", patterns));
    assert.ok(!hostAllowed("https://blobs.example.net/x", patterns)); // apex needs its own entry
    assert.ok(!hostAllowed("https://xblobs.example.net/x", patterns));
    assert.ok(hostAllowed("https://sd.example.org:9000/sd/v7/", patterns));
    assert.ok(!hostAllowed("https://sd.example.org/sd/v7/", patterns)); // 443
    assert.ok(hostAllowed("https://h:443/", ["h:443"]));
    assert.ok(hostAllowed("wss://h/", ["h:443"])); // default port of wss
    assert.ok(hostAllowed("http://h/", ["h:80"]));
    assert.ok(hostAllowed("https://[::1]:9/", ["[::1]:9"]));
    assert.ok(!hostAllowed("not a url", patterns));
    assert.ok(!hostAllowed("https://x.example.com/", ["bad pattern!"]));
    assert.ok(!hostAllowed("https://x.example.com/", []));
  },
});

Deno.test({
  name: "parseHostPattern rejects malformed entries",
  permissions: "none",
  fn() {
    assert.deepEqual(parseHostPattern("*.Example.com:9000"), {
      host: "example.com",
      wildcard: true,
      port: 9000,
    });
    for (
      const bad of ["", "*", "*.", "a..b", "a.b:0", "a.b:70000", "a/b", "*.*.a", "a*.b", "-a."]
    ) {
      assert.throws(() => parseHostPattern(bad), AosError, bad);
    }
    assert.deepEqual(urlHostPort("wss://a.b"), { host: "a.b", port: 443 });
    assert.throws(() => urlHostPort("ftp2://"), AosError);
  },
});

Deno.test({
  name: "linkAllowList adds the configured discovery hosts exactly",
  permissions: "none",
  fn() {
    const list = linkAllowList({
      allowedHosts: ["*.example.com"],
      serviceDiscoveryUrl: "https://aoscloud.io:9000/sd/v7/",
      overrideServiceDiscoveryUrl: "",
    });
    assert.ok(hostAllowed("https://aoscloud.io:9000/sd/v7/", list));
    assert.ok(!hostAllowed("https://aoscloud.io/", list));
    assert.ok(!hostAllowed("https://x.aoscloud.io:9000/", list));
    assert.ok(hostAllowed("wss://ws.example.com/", list));
  },
});
