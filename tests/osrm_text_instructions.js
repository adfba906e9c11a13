// Compiles every step of OSRM route responses with osrm-text-instructions (OSRM's own instruction
// compiler), in each language asked. Reads {"languages": [...], "responses": [<OSRM route response>...]}
// on stdin; writes [{"route": r, "leg": l, "step": s, "type": ..., "text": {lang: text}}] on stdout.
// Any step the library cannot compile ends the run with exit code 1 and the reason on stderr.
'use strict';

const path = require('path');
const modules = path.resolve(__dirname, '..', 'web', 'node_modules');
const instructions = require(path.join(modules, 'osrm-text-instructions'))('v5');

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const { languages, responses } = JSON.parse(input);
  const out = [];
  const warnings = [];
  const log = console.log;
  console.log = (...args) => warnings.push(args.join(' ')); // the library logs unknown types
  try {
    responses.forEach((resp, r) => {
      resp.routes.forEach((route) => {
        route.legs.forEach((leg, l) => {
          leg.steps.forEach((step, s) => {
            const text = {};
            for (const lang of languages) {
              text[lang] = instructions.compile(lang, step, { legCount: route.legs.length, legIndex: l });
            }
            out.push({ route: r, leg: l, step: s, type: step.maneuver.type, text });
          });
        });
      });
    });
  } catch (e) {
    console.log = log;
    process.stderr.write(`osrm-text-instructions failed: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  }
  console.log = log;
  if (warnings.length) {
    process.stderr.write(`osrm-text-instructions warned: ${warnings.join('; ')}\n`);
    process.exit(1);
  }
  process.stdout.write(JSON.stringify(out));
});
