// Builds console/dist, the assets the tollgate binary embeds: our own files from src/ as they
// are (no bundler), and uPlot's distribution files from node_modules (pinned by
// package-lock.json). Run `npm ci && npm run build` after changing src/; tests/console.rs
// fails while dist/ differs from what this would write.
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
mkdirSync(join(dist, "vendor"), { recursive: true });
for (const file of readdirSync(join(here, "src"))) {
  copyFileSync(join(here, "src", file), join(dist, file));
}
for (const file of ["uPlot.iife.min.js", "uPlot.min.css"]) {
  copyFileSync(join(here, "node_modules", "uplot", "dist", file), join(dist, "vendor", file));
}
console.log("console/dist written");
