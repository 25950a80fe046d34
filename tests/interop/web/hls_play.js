#!/usr/bin/env node
// Plays an HLS stream with hls.js in headless Chromium and reports what happened.
//
//   node hls_play.js URL [--advance S] [--timeout S] [--chromium PATH] [--cross-origin]
//
// URL is an .m3u8 playlist (a redirect to one is followed). The page plays it
// muted through hls.js (MSE) and waits until video.currentTime has advanced by
// --advance seconds (default 3) past the first time it played, or --timeout
// seconds (default 30) have passed. Prints one JSON line:
//   {"ok":bool,"currentTime":n,"advanced":n,"errors":[fatal hls.js errors],...}
// and exits 0 when ok, else 1 (2 for bad arguments).
//
// The page is served at the playlist's own origin (page.route answers two paths
// there, every other request goes to the real server), so the test needs no
// CORS headers; --cross-origin instead serves it from a node http server on
// 127.0.0.1:0, which makes every playlist and segment request cross-origin.
// Chromium is /usr/bin/chromium (or --chromium), launched through
// playwright-core with a fresh --user-data-dir, which is removed at exit.
'use strict';

const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const PAGE_PATH = '/__openace_hls_play__.html';
const HLS_PATH = '/__openace_hls_play__/hls.min.js';
const HLS_JS = require.resolve('hls.js/dist/hls.min.js');
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--autoplay-policy=no-user-gesture-required'];

function parseArgs(argv) {
  const opts = { url: null, advance: 3, timeout: 30, chromium: '/usr/bin/chromium',
    crossOrigin: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--advance') opts.advance = Number(next());
    else if (a === '--timeout') opts.timeout = Number(next());
    else if (a === '--chromium') opts.chromium = next();
    else if (a === '--cross-origin') opts.crossOrigin = true;
    else if (!a.startsWith('--') && opts.url === null) opts.url = a;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!opts.url || !/^https?:\/\//.test(opts.url)) throw new Error('URL (http://...) is required');
  if (!(opts.advance > 0 && opts.advance < 600)) throw new Error('--advance must be in (0, 600)');
  if (!(opts.timeout > 0 && opts.timeout <= 600)) throw new Error('--timeout must be in (0, 600]');
  return opts;
}

function pageHtml(hlsSrc) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>hls_play</title></head>
<body><video id="v" muted autoplay playsinline></video>
<script src="${hlsSrc}"></script></body></html>`;
}

// Runs in the page: starts hls.js and keeps facts in window.__play.
function startInPage(url) {
  const s = { supported: false, errors: [], nonFatal: 0, fragsLoaded: 0, levels: 0,
    playing: false, startTime: null };
  window.__play = s;
  const video = document.getElementById('v');
  video.muted = true;
  video.addEventListener('playing', () => {
    s.playing = true;
    if (s.startTime === null) s.startTime = video.currentTime;
  });
  video.addEventListener('timeupdate', () => {
    if (s.startTime === null && video.currentTime > 0 && !video.paused) {
      s.startTime = video.currentTime;
    }
  });
  if (!window.Hls || !window.Hls.isSupported()) {
    s.errors.push('hls.js is not supported in this browser (no MSE?)');
    return;
  }
  s.supported = true;
  const hls = new window.Hls({ lowLatencyMode: false });
  hls.on(window.Hls.Events.ERROR, (_e, d) => {
    const status = d.response ? ` (HTTP ${d.response.code})` : '';
    if (d.fatal) s.errors.push(`${d.type}/${d.details}${status}`);
    else s.nonFatal += 1;
  });
  hls.on(window.Hls.Events.MANIFEST_PARSED, (_e, d) => {
    s.levels = d.levels.length;
    video.play().catch((err) => s.errors.push(`video.play(): ${err}`));
  });
  hls.on(window.Hls.Events.FRAG_LOADED, () => { s.fragsLoaded += 1; });
  hls.loadSource(url);
  hls.attachMedia(video);
}

function readState() {
  const v = document.getElementById('v');
  const s = window.__play || {};
  return Object.assign({}, s, { currentTime: v ? v.currentTime : 0,
    readyState: v ? v.readyState : 0, mediaError: v && v.error ? v.error.code : null });
}

async function servePage() {
  const server = http.createServer((req, res) => {
    if (req.url === HLS_PATH) {
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      fs.createReadStream(HLS_JS).pipe(res);
    } else if (req.url === PAGE_PATH) {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(pageHtml(HLS_PATH));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

async function play(opts, result) {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hls-play-'));
  let context = null;
  let server = null;
  try {
    context = await chromium.launchPersistentContext(userDir, {
      executablePath: opts.chromium, headless: true, args: CHROMIUM_ARGS,
      chromiumSandbox: false, timeout: 20000 });
    const page = context.pages()[0] || await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') result.console.push(m.text()); });
    page.on('pageerror', (e) => result.errors.push(`page error: ${e.message}`));
    let pageUrl;
    if (opts.crossOrigin) {
      server = await servePage();
      pageUrl = `http://127.0.0.1:${server.address().port}${PAGE_PATH}`;
    } else {
      const origin = new URL(opts.url).origin;
      pageUrl = origin + PAGE_PATH;
      await page.route(pageUrl, (r) => r.fulfill({ contentType: 'text/html',
        body: pageHtml(HLS_PATH) }));
      await page.route(origin + HLS_PATH, (r) => r.fulfill({ contentType: 'text/javascript',
        body: fs.readFileSync(HLS_JS, 'utf8') }));
    }
    await page.goto(pageUrl, { timeout: 15000 });
    await page.evaluate(startInPage, opts.url);
    const deadline = Date.now() + opts.timeout * 1000;
    let state = {};
    for (;;) {
      state = await page.evaluate(readState);
      const advanced = state.startTime === null ? 0 : state.currentTime - state.startTime;
      Object.assign(result, { currentTime: state.currentTime, advanced,
        fragsLoaded: state.fragsLoaded, levels: state.levels, readyState: state.readyState,
        nonFatal: state.nonFatal, mediaError: state.mediaError });
      result.errors = result.errors.concat(state.errors.filter((e) => !result.errors.includes(e)));
      if (advanced >= opts.advance) { result.ok = result.errors.length === 0; break; }
      if (state.errors.length > 0 || state.mediaError !== null) break;
      if (Date.now() >= deadline) {
        result.errors.push(`timeout: currentTime advanced ${advanced.toFixed(2)} s of ` +
          `${opts.advance} in ${opts.timeout} s`);
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    if (context) await context.close().catch(() => {});
    if (server) server.close();
    fs.rmSync(userDir, { recursive: true, force: true });
  }
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stdout.write(JSON.stringify({ ok: false, currentTime: 0, advanced: 0,
      errors: [`usage: ${e.message}`] }) + '\n');
    process.exit(2);
  }
  const started = Date.now();
  const result = { ok: false, currentTime: 0, advanced: 0, errors: [], console: [] };
  // Hard bound: whatever hangs (browser start, page), the script ends.
  const watchdog = setTimeout(() => {
    result.errors.push(`watchdog: no result in ${opts.timeout + 40} s`);
    process.stdout.write(JSON.stringify(result) + '\n');
    process.exit(1);
  }, (opts.timeout + 40) * 1000);
  try {
    await play(opts, result);
  } catch (e) {
    result.ok = false;
    result.errors.push(`harness: ${e.message.split('\n')[0]}`);
  }
  clearTimeout(watchdog);
  result.elapsed_s = (Date.now() - started) / 1000;
  result.console = result.console.slice(-10);
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(result.ok ? 0 : 1);
}

main();
