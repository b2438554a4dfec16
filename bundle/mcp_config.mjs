// Prints, as JSON, the command, arguments and environment that Claude Desktop starts an unpacked
// MCP Bundle with, for the given user settings: the same substitution, done by the function the
// pinned @anthropic-ai/mcpb package exports for hosts.
//
//   node bundle/mcp_config.mjs UNPACKED_DIR '{"demo": true}'
//
// Prints null when the host would not start the server (a required setting left empty).
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, sep } from "node:path";
import { getMcpConfigForManifest } from "@anthropic-ai/mcpb/node";

const [extensionPath, userConfigJson] = process.argv.slice(2);
const manifest = JSON.parse(readFileSync(join(extensionPath, "manifest.json"), "utf8"));
const config = await getMcpConfigForManifest({
  manifest,
  extensionPath,
  systemDirs: { HOME: homedir() },
  userConfig: JSON.parse(userConfigJson ?? "{}"),
  pathSeparator: sep,
  logger: console,
});
process.stdout.write(JSON.stringify(config ?? null));
