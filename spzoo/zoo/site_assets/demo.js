// The in-browser demo of a zoo model page (written by `spzoo zoo site`).
//
// Runs the page's ONNX file with ONNX Runtime Web (WebAssembly, served from
// this site's vendor/ folder: nothing is fetched from elsewhere) on the
// bundled evaluation examples. Gated models take the scalar input
// `threshold` (spzoo.export.onnx; -inf for "none"); the slider steps through
// the thresholds of the manifest's curve and shows that point's expected
// MACs and accuracy, which come from the manifest, next to the prediction
// and the latency measured here.
//
// `?selftest=1` runs every bundled example at every threshold of the curve
// and writes the logits as JSON into <pre id="selftest"> (data-state="done"),
// for a headless browser to read.
import * as ort from "./vendor/onnxruntime-web/ort.wasm.bundle.min.mjs";

const THRESHOLD_INPUT = "threshold";
const RUNS = 5; // latency: median of this many runs
const $ = (id) => document.getElementById(id);
const config = JSON.parse($("model-config").textContent);
const curve = config.curve || [];

ort.env.wasm.numThreads = 1; // no cross-origin isolation needed
ort.env.wasm.wasmPaths = new URL("./vendor/onnxruntime-web/", import.meta.url).href;

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

function decode(text) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

function softmax(logits) {
  const top = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const thresholdName = (t) => (t === null ? "none (-inf)" : String(t));
const thresholdValue = (t) => (t === null ? -Infinity : t);

function draw(example, shape) {
  const [h, w, c] = shape;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of example) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  const small = document.createElement("canvas");
  small.width = w;
  small.height = h;
  const ctx = small.getContext("2d");
  const image = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) {
      const v = example[i * c + (c === 3 ? k : 0)];
      image.data[4 * i + k] = Math.round((v - lo) * scale);
    }
    image.data[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  const canvas = $("example-image");
  const big = canvas.getContext("2d");
  big.imageSmoothingEnabled = false;
  big.drawImage(small, 0, 0, canvas.width, canvas.height);
}

// An image file as `spzoo infer FILE` reads one (spzoo.export.inputs):
// greyscale by ITU-R 601-2 luma (Pillow's "L") or RGB, nearest-neighbour
// resize, pixels / 255, then the dataset's (x - mean) / std per channel.
async function readImage(file) {
  const p = config.upload;
  const [h, w, c] = config.shape;
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bitmap, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const x = new Float32Array(h * w * c);
  for (let i = 0; i < h * w; i++) {
    const [r, g, b] = [rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]];
    // Pillow's "L": (19595 R + 38470 G + 7471 B + 0x8000) >> 16
    const values = c === 1 ? [(r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16] : [r, g, b];
    for (let k = 0; k < c; k++) {
      x[i * c + k] = (values[k] / 255 - p.mean[k % p.mean.length]) / p.std[k % p.std.length];
    }
  }
  return x;
}

async function main() {
  const [session, bundle] = await Promise.all([
    ort.InferenceSession.create(config.onnx, { executionProviders: ["wasm"] }),
    fetch(config.examples).then((r) => {
      if (!r.ok) throw new Error(`${config.examples}: HTTP ${r.status}`);
      return r.json();
    }),
  ]);
  const gated = session.inputNames.includes(THRESHOLD_INPUT);
  const imageInput = session.inputNames.find((n) => n !== THRESHOLD_INPUT);
  const examples = bundle.examples.map((e) => ({ ...e, x: decode(e.data) }));
  $("demo").dataset.inputs = session.inputNames.join(",");

  async function infer(x, threshold, runs) {
    const feeds = { [imageInput]: new ort.Tensor("float32", x, [1, ...config.shape]) };
    if (gated) {
      feeds[THRESHOLD_INPUT] = new ort.Tensor(
        "float32", new Float32Array([thresholdValue(threshold)]), []);
    }
    const times = [];
    let out;
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      out = await session.run(feeds);
      times.push(performance.now() - t0);
    }
    return { logits: Array.from(out[session.outputNames[0]].data), ms: median(times) };
  }

  if (new URLSearchParams(location.search).get("selftest") === "1") {
    setStatus("running", "self-test: running every bundled example...");
    const thresholds = gated && curve.length ? curve.map((r) => r.threshold) : [null];
    const results = [];
    for (const e of examples) {
      for (const t of thresholds) {
        const { logits } = await infer(e.x, t, 1);
        const top1 = logits.indexOf(Math.max(...logits));
        results.push({ index: e.index, label: e.label, threshold: t, top1, logits });
      }
    }
    const pre = $("selftest");
    pre.textContent = JSON.stringify({ model: config.name, gated, results });
    pre.hidden = false;
    pre.dataset.state = "done";
  }

  const select = $("example");
  examples.forEach((e, i) => {
    const option = document.createElement("option");
    option.value = String(i);
    option.textContent = `#${e.index} (${bundle.classes[e.label]})`;
    select.appendChild(option);
  });
  const slider = $("threshold");
  let request = 0;
  let current = examples[0]; // {x, label (null: uploaded), index}

  async function update() {
    const mine = ++request;
    const e = current;
    const point = gated && curve.length ? curve[Number(slider.value)] : null;
    const threshold = point ? point.threshold : null;
    draw(e.x, config.shape);
    if (point) {
      $("threshold-value").textContent = thresholdName(threshold);
      const share = ((100 * point.macs) / config.macs).toFixed(1);
      $("macs").textContent =
        `Expected MACs at threshold ${thresholdName(threshold)}: ` +
        `${Math.round(point.macs).toLocaleString("en-US")} (${share}% of ` +
        `${config.macs.toLocaleString("en-US")}); accuracy there ` +
        `${(100 * point.accuracy).toFixed(2)}% (the manifest's curve).`;
    }
    setStatus("running", "running...");
    const { logits, ms } = await infer(e.x, threshold, RUNS);
    if (mine !== request) return; // a newer request is under way
    const p = softmax(logits);
    const order = p.map((v, i) => i).sort((a, b) => p[b] - p[a]);
    const best = order[0];
    const prediction = $("prediction");
    prediction.textContent =
      `Prediction: ${config.classes[best]} (${(100 * p[best]).toFixed(2)}%); ` +
      (e.label === null ? "your image." : `true class: ${config.classes[e.label]}.`);
    prediction.dataset.threshold = point ? thresholdName(threshold) : "";
    prediction.dataset.example = String(e.index);
    $("top").replaceChildren(...order.slice(0, 3).map((i) => {
      const li = document.createElement("li");
      li.textContent = `${config.classes[i]}: ${(100 * p[i]).toFixed(2)}% ` +
        `(logit ${logits[i].toFixed(3)})`;
      return li;
    }));
    $("latency").textContent =
      `Latency: ${ms.toFixed(3)} ms (median of ${RUNS} runs, ONNX Runtime Web ` +
      `${ort.env.versions.web || ""}, WebAssembly, 1 thread, this browser).`;
    setStatus("ready", "ready");
  }

  select.addEventListener("change", () => {
    current = examples[Number(select.value)];
    update();
  });
  const upload = $("upload");
  if (upload) {
    upload.addEventListener("change", async () => {
      if (!upload.files.length) return;
      try {
        current = { x: await readImage(upload.files[0]), label: null, index: "upload" };
      } catch (error) {
        setStatus("error", `error: cannot read ${upload.files[0].name}: ${error.message || error}`);
        return;
      }
      update();
    });
  }
  if (slider) slider.addEventListener("input", update);
  await update();
}

main().catch((error) => {
  setStatus("error", `error: ${error.message || error}`);
  console.error(error);
});
