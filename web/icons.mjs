// Renders the brand marker icons (api/static/icons/*.svg) to PNG at @2x and @3x for the WeChat `map`
// component, which draws PNG/JPG marker images only. Usage: node icons.mjs SRC_DIR OUT_DIR
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join, basename } from "node:path";
import { Resvg } from "@resvg/resvg-js";

const [src, out] = process.argv.slice(2);
if (!src || !out) {
  console.error("usage: node icons.mjs SRC_DIR OUT_DIR");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
for (const file of readdirSync(src).filter((f) => f.endsWith(".svg")).sort()) {
  const svg = readFileSync(join(src, file));
  const name = basename(file, ".svg");
  const base = new Resvg(svg).width; // the SVG's own size in CSS pixels (1x)
  for (const scale of [2, 3]) {
    const png = new Resvg(svg, { fitTo: { mode: "width", value: Math.round(base * scale) } }).render().asPng();
    writeFileSync(join(out, `${name}@${scale}x.png`), png);
  }
}
