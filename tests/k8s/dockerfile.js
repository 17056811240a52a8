"use strict";
// A Dockerfile's instructions, for check.js (its rules) and docker/rootfs-build.js (which
// runs them): comments and blank lines dropped, continuation lines joined.

// Instructions of a Dockerfile as [{op, args, line}] (continuations joined).
function instructions(text) {
  const out = [];
  let cur = "", start = 0;
  text.split("\n").forEach((line, i) => {
    if (cur === "" && (/^\s*#/.test(line) || /^\s*$/.test(line))) return;
    if (cur === "") start = i + 1;
    if (/^\s*#/.test(line)) return;
    cur += line.replace(/\\\s*$/, " ");
    if (!/\\\s*$/.test(line)) {
      const m = cur.trim().match(/^(\S+)\s*(.*)$/);
      out.push({ op: m[1].toUpperCase(), args: m[2], line: start });
      cur = "";
    }
  });
  return out;
}

module.exports = { instructions };
