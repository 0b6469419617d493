/* spinelesion case viewer (viewer.html): the scan and its labels in NiiVue (niivue.umd.js, vendored).
 *
 * The page holds its settings in <script type="application/json" id="viewer-config">: the two
 * volumes beside it (viewer_image.nii.gz, labels.nii.gz), the label classes and colours, and the
 * record's vertebrae, lesions and worst cord slice with world RAS+ millimetre positions.
 * Positions: "#mm=x,y,z" in the address moves the crosshair there (the tables' links set it).
 * Lesion ids: the lesion voxels of labels.nii.gz are grouped into 26-connected components here and
 * each is matched to the record's lesion with the same centroid (the record's ids), so the ids
 * drawn on the slices and shown on hover are the tables' ids.
 * For tests: window.spinelesionViewer, and <body data-viewer="loading|ready|file|error">.
 */
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("viewer-config").textContent);
  var api = window.spinelesionViewer = {config: config, ready: false, error: null, timings: {}};
  var t0 = performance.now();
  function mark(stage) { api.timings[stage] = Math.round(performance.now() - t0); }
  var LESION = config.lesion_value;
  var body = document.body;

  function setState(state, message) {
    body.setAttribute("data-viewer", state);
    if (message) {
      var box = document.getElementById("viewer-message");
      box.textContent = message;
      box.hidden = false;
    }
  }

  if (location.protocol === "file:") {  // browsers refuse such a page the volumes: the banner stays
    setState("file");
    return;
  }
  if (typeof niivue === "undefined") {
    setState("error", "NiiVue (_viewer/niivue.umd.js) did not load: serve the run with `spinelesion review`.");
    return;
  }
  if (config.version !== 1) {
    setState("error", "This page was written by another spinelesion version (settings version " + config.version +
             "): rerun `spinelesion infer` on the scan to remake it.");
    return;
  }
  document.getElementById("file-banner").hidden = true;

  // ---- geometry: world RAS+ mm <-> native voxel indices of a NIfTI (its sform, as NiiVue reads it)
  function inverse(m) {  // 4x4 affine (rows) -> its inverse (rows)
    var a = m[0][0], b = m[0][1], c = m[0][2], d = m[1][0], e = m[1][1], f = m[1][2];
    var g = m[2][0], h = m[2][1], k = m[2][2];
    var A = e * k - f * h, B = -(d * k - f * g), C = d * h - e * g, det = a * A + b * B + c * C;
    var r = [[A / det, -(b * k - c * h) / det, (b * f - c * e) / det],
             [B / det, (a * k - c * g) / det, -(a * f - c * d) / det],
             [C / det, -(a * h - b * g) / det, (a * e - b * d) / det]];
    return r.map(function (row) {
      return row.concat([-(row[0] * m[0][3] + row[1] * m[1][3] + row[2] * m[2][3])]);
    });
  }
  function apply(m, p) {
    return [0, 1, 2].map(function (i) { return m[i][0] * p[0] + m[i][1] * p[1] + m[i][2] * p[2] + m[i][3]; });
  }
  function Grid(volume) {
    this.dims = [volume.hdr.dims[1], volume.hdr.dims[2], volume.hdr.dims[3]];
    this.affine = volume.hdr.affine;
    this.toVoxel = inverse(this.affine);
    this.img = volume.img;
  }
  Grid.prototype.index = function (mm) {  // flat native index of the voxel holding mm, or -1
    var v = apply(this.toVoxel, mm).map(Math.round), n = this.dims;
    if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[0] >= n[0] || v[1] >= n[1] || v[2] >= n[2]) return -1;
    return v[0] + n[0] * (v[1] + n[1] * v[2]);
  };
  Grid.prototype.value = function (mm) {
    var i = this.index(mm);
    return i < 0 ? 0 : Math.round(this.img[i]);
  };

  // ---- lesion components of the label map, matched to the record's lesions by centroid
  function lesionComponents(grid) {
    var n = grid.dims, img = grid.img, lo = [n[0], n[1], n[2]], hi = [-1, -1, -1], count = 0, idx = 0;
    for (var z = 0; z < n[2]; z++) for (var y = 0; y < n[1]; y++) for (var x = 0; x < n[0]; x++, idx++) {
      if (img[idx] !== LESION) continue;
      count++;
      if (x < lo[0]) lo[0] = x; if (x > hi[0]) hi[0] = x;
      if (y < lo[1]) lo[1] = y; if (y > hi[1]) hi[1] = y;
      if (z < lo[2]) lo[2] = z; if (z > hi[2]) hi[2] = z;
    }
    var out = {lo: lo, size: [0, 0, 0], comp: null, byComponent: [0], extent: {}};
    if (!count) return out;
    var s = [hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1];
    if (s[0] * s[1] * s[2] > 128e6) return out;  // a box too big to label here: ids on hover only by nearest centroid
    var comp = new Uint16Array(s[0] * s[1] * s[2]), queue = new Int32Array(count), stats = [null], label = 0;
    for (var bz = 0; bz < s[2]; bz++) for (var by = 0; by < s[1]; by++) for (var bx = 0; bx < s[0]; bx++) {
      var b = bx + s[0] * (by + s[1] * bz);
      if (comp[b] || img[(bx + lo[0]) + n[0] * ((by + lo[1]) + n[1] * (bz + lo[2]))] !== LESION) continue;
      if (label === 65535) break;
      label++;
      var st = {n: 0, sum: [0, 0, 0], lo: [bx, by, bz], hi: [bx, by, bz]}, head = 0, tail = 0;
      comp[b] = label; queue[tail++] = b;
      while (head < tail) {
        var q = queue[head++], qx = q % s[0], qy = ((q - qx) / s[0]) % s[1], qz = (q - qx - s[0] * qy) / (s[0] * s[1]);
        st.n++; st.sum[0] += qx; st.sum[1] += qy; st.sum[2] += qz;
        var p = [qx, qy, qz];
        for (var a = 0; a < 3; a++) { if (p[a] < st.lo[a]) st.lo[a] = p[a]; if (p[a] > st.hi[a]) st.hi[a] = p[a]; }
        for (var dz = -1; dz <= 1; dz++) for (var dy = -1; dy <= 1; dy++) for (var dx = -1; dx <= 1; dx++) {
          var X = qx + dx, Y = qy + dy, Z = qz + dz;
          if (X < 0 || Y < 0 || Z < 0 || X >= s[0] || Y >= s[1] || Z >= s[2]) continue;
          var r = X + s[0] * (Y + s[1] * Z);
          if (comp[r] || img[(X + lo[0]) + n[0] * ((Y + lo[1]) + n[1] * (Z + lo[2]))] !== LESION) continue;
          comp[r] = label; queue[tail++] = r;
        }
      }
      stats.push(st);
    }
    out.size = s; out.comp = comp;
    out.byComponent = stats.map(function (st, c) {
      if (!st) return 0;
      var centre = apply(grid.affine, [0, 1, 2].map(function (a) { return lo[a] + st.sum[a] / st.n; }));
      var best = null, bestDistance = 1.0;  // record centroids are rounded to 0.01 mm
      config.lesions.forEach(function (lesion) {
        var p = lesion.centroid, d = Math.hypot(centre[0] - p[0], centre[1] - p[1], centre[2] - p[2]);
        if (d < bestDistance) { best = lesion; bestDistance = d; }
      });
      if (best) {
        out.extent[best.id] = [0, 1, 2, 3, 4, 5, 6, 7].map(function (corner) {  // the box's corners in mm
          return apply(grid.affine, [0, 1, 2].map(function (a) {
            return lo[a] + ((corner >> a) & 1 ? st.hi[a] + 0.5 : st.lo[a] - 0.5);
          }));
        });
      }
      return best ? best.id : 0;
    });
    return out;
  }
  function lesionAt(mm) {  // {lesion} at a world point (lesion null: lesion voxels not in the table)
    var g = api.labels, c = api.components, v = apply(g.toVoxel, mm).map(Math.round);
    if (!c || !c.comp) return null;
    var b = [0, 1, 2].map(function (a) { return v[a] - c.lo[a]; });
    if (b.some(function (x, a) { return x < 0 || x >= c.size[a]; })) return null;
    var id = c.byComponent[c.comp[b[0] + c.size[0] * (b[1] + c.size[1] * b[2])]] || 0;
    return config.lesions.filter(function (x) { return x.id === id; })[0] || null;
  }

  // ---- words for a position: class, level, lesion
  function levelAt(mm) {  // the vertebra whose slab (across the column) holds mm, or null
    var vs = config.vertebrae, best = null, bestScore = 1.0;
    vs.forEach(function (v, i) {
      var up = vs[Math.min(i + 1, vs.length - 1)].centroid, down = vs[Math.max(i - 1, 0)].centroid;
      var axis = vs.length > 1 ? [0, 1, 2].map(function (a) { return up[a] - down[a]; }) : [0, 0, 1];
      // the slab: half way to each neighbour (the axis spans two gaps inside the column, one at its ends)
      var length = Math.hypot(axis[0], axis[1], axis[2]) || 1;
      var half = vs.length > 1 ? length / (i > 0 && i < vs.length - 1 ? 4 : 2) : 20;
      var d = [0, 1, 2].map(function (a) { return mm[a] - v.centroid[a]; });
      var along = (d[0] * axis[0] + d[1] * axis[1] + d[2] * axis[2]) / length;
      var across = Math.sqrt(Math.max(0, d[0] * d[0] + d[1] * d[1] + d[2] * d[2] - along * along));
      var score = Math.abs(along) / half;
      if (across < 90 && score < bestScore) { best = v; bestScore = score; }
    });
    return best;
  }
  function lesionWords(x) {
    var parts = ["lesion " + x.id, x.volume_ml + " ml", x.where || "no vertebra"];
    if (x.type) parts.push(x.type);
    parts.push(x.confidence === null ? "confidence n/a" : "confidence " + x.confidence);
    if (x.tta_sd !== null) parts.push("TTA spread " + x.tta_sd);
    return parts.join(" \u00b7 ");
  }
  function describe(mm) {
    var value = api.labels.value(mm), cls = config.classes.filter(function (c) { return c.value === value; })[0];
    var level = levelAt(mm), lesion = value === LESION ? lesionAt(mm) : null;
    var name = cls ? cls.name : (value ? "label " + value : "no label");
    if (value === LESION && !lesion) name += " (a component under the smallest lesion kept: not in the table)";
    return {mm: mm, value: value, label: cls ? cls.name : (value ? "label " + value : "background"),
            level: level ? level.name : null, lesion: lesion ? lesion.id : null,
            text: lesion ? lesionWords(lesion) : (level ? level.name + " \u00b7 " : "") + name};
  }

  // ---- NiiVue
  var canvas = document.getElementById("viewer-canvas");
  var nv = api.nv = new niivue.Niivue({
    backColor: [0, 0, 0, 1], crosshairColor: [0.1, 1, 0.3, 0.9], crosshairWidth: 1, show3Dcrosshair: false,
    isRadiologicalConvention: true, sagittalNoseLeft: true, multiplanarShowRender: niivue.SHOW_RENDER.NEVER,
    isColorbar: false,
    textHeight: 0.05, logLevel: "warn", dragAndDropEnabled: false
  });
  var lut = {R: [0], G: [0], B: [0], A: [0], I: [0], labels: ["background"]};  // 0: transparent
  config.classes.forEach(function (c) {
    lut.I.push(c.value); lut.R.push(c.colour[0]); lut.G.push(c.colour[1]); lut.B.push(c.colour[2]);
    lut.A.push(c.value ? 255 : 0); lut.labels.push(c.name);
  });

  function readout(mm) {
    var d = api.here = describe(mm), box = document.getElementById("readout");
    box.textContent = "R " + mm[0].toFixed(1) + "  A " + mm[1].toFixed(1) + "  S " + mm[2].toFixed(1) +
      " mm \u00b7 " + d.text;
    box.setAttribute("data-mm", mm.map(function (x) { return x.toFixed(2); }).join(","));
    box.setAttribute("data-label", d.label);
    box.setAttribute("data-level", d.level || "");
    box.setAttribute("data-lesion", d.lesion === null ? "" : String(d.lesion));
  }
  api.crosshairMM = function () {
    var mm = nv.frac2mm(nv.scene.crosshairPos, 0, true);
    return [mm[0], mm[1], mm[2]];
  };
  api.moveTo = function (mm) {
    nv.scene.crosshairPos = nv.mm2frac([mm[0], mm[1], mm[2]], 0, true);
    nv.createOnLocationChange();
    nv.drawScene();
  };
  api.canvasPoint = function (mm, axCorSag) {  // page (CSS px, viewport) position of mm in a 2D tile, or null
    var hit = nv.frac2canvasPosWithTile(nv.mm2frac([mm[0], mm[1], mm[2]], 0, true), axCorSag);
    if (!hit) return null;
    var rect = canvas.getBoundingClientRect(), dpr = nv.uiData.dpr || 1;
    return [rect.left + hit.pos[0] / dpr, rect.top + hit.pos[1] / dpr];
  };

  // ---- lesion ids drawn on the slices
  var markerLayer = document.getElementById("markers"), markersQueued = false;
  function drawMarkers() {
    markersQueued = false;
    markerLayer.textContent = "";
    if (!api.ready || !document.getElementById("show-ids").checked) return;
    var lesionOn = document.querySelector('input[data-class="' + LESION + '"]');
    if (lesionOn && !lesionOn.checked) return;
    var here = nv.scene.crosshairPos, rect = canvas.getBoundingClientRect(), dpr = nv.uiData.dpr || 1;
    var outer = markerLayer.getBoundingClientRect();
    nv.screenSlices.forEach(function (tile) {
      var axis = [2, 1, 0][tile.axCorSag];  // the frac coordinate a tile holds fixed
      if (axis === undefined) return;
      config.lesions.forEach(function (lesion) {
        var corners = (api.components.extent || {})[lesion.id];
        if (!corners) return;
        var fr = corners.map(function (c) { return nv.mm2frac(c, 0, true)[axis]; });
        if (here[axis] < Math.min.apply(null, fr) || here[axis] > Math.max.apply(null, fr)) return;
        var f = nv.mm2frac(lesion.centroid, 0, true);
        f[axis] = here[axis];
        var hit = nv.frac2canvasPosWithTile(f, tile.axCorSag);
        if (!hit || nv.screenSlices[hit.tileIndex] !== tile) return;
        var tag = document.createElement("span");
        tag.className = "lesion-id";
        tag.textContent = String(lesion.id);
        tag.title = lesionWords(lesion);
        tag.style.left = (rect.left - outer.left + hit.pos[0] / dpr + 6) + "px";
        tag.style.top = (rect.top - outer.top + hit.pos[1] / dpr - 18) + "px";
        markerLayer.appendChild(tag);
      });
    });
  }
  function queueMarkers() {
    if (!markersQueued) { markersQueued = true; window.requestAnimationFrame(drawMarkers); }
  }

  // ---- controls
  function setWindow(name) {
    var image = nv.volumes[0], w = config.windows[name];
    if (w) { image.cal_min = w[0]; image.cal_max = w[1]; }
    else if (name === "full") { image.cal_min = image.global_min; image.cal_max = image.global_max; }
    else { image.cal_min = image.robust_min; image.cal_max = image.robust_max; }
    nv.updateGLVolume();
    document.querySelectorAll("button[data-window]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-window") === name));
    });
  }
  // Every colour change re-colours whole volumes (milliseconds on a GPU; about 40 s for 512x512x600
  // voxels in a CPU-only browser), so the first window and the label colours go in with the volumes.
  var first = config.windows[config.default_window];
  nv.onVolumeAddedFromUrl = function (options, volume) {
    if (options.url === config.labels) volume.setColormapLabel(lut);
  };
  function setClasses() {
    document.querySelectorAll("input[data-class]").forEach(function (box) {
      lut.A[lut.I.indexOf(Number(box.getAttribute("data-class")))] = box.checked ? 255 : 0;
    });
    nv.volumes[1].setColormapLabel(lut);
    nv.updateGLVolume();
    queueMarkers();
  }
  function bindControls() {
    document.querySelectorAll("button[data-window]").forEach(function (b) {
      b.addEventListener("click", function () { setWindow(b.getAttribute("data-window")); });
    });
    document.querySelectorAll("button[data-view]").forEach(function (b) {
      b.addEventListener("click", function () {
        nv.setSliceType(Number(b.getAttribute("data-view")));
        document.querySelectorAll("button[data-view]").forEach(function (o) {
          o.setAttribute("aria-pressed", String(o === b));
        });
        queueMarkers();
      });
    });
    var opacity = document.getElementById("opacity");
    opacity.addEventListener("input", function () { nv.setOpacity(1, Number(opacity.value) / 100); });
    document.querySelectorAll("input[data-class]").forEach(function (box) { box.addEventListener("change", setClasses); });
    document.getElementById("show-ids").addEventListener("change", queueMarkers);
    document.querySelectorAll("tr[data-mm]").forEach(function (row) {  // a click anywhere on a row goes there
      row.addEventListener("click", function (event) {
        if (event.target.closest("a")) return;
        location.hash = "mm=" + row.getAttribute("data-mm");
      });
    });
    var tip = document.getElementById("hover");
    canvas.addEventListener("mousemove", function (event) {
      var rect = canvas.getBoundingClientRect(), dpr = nv.uiData.dpr || 1;
      var frac = nv.canvasPos2frac([(event.clientX - rect.left) * dpr, (event.clientY - rect.top) * dpr]);
      var d = frac[0] >= 0 ? describe(Array.prototype.slice.call(nv.frac2mm(frac, 0, true), 0, 3)) : null;
      if (!d || !d.value) { tip.hidden = true; return; }
      tip.textContent = d.text;
      tip.setAttribute("data-lesion", d.lesion === null ? "" : String(d.lesion));
      tip.style.left = (event.clientX + 14) + "px";
      tip.style.top = (event.clientY + 14) + "px";
      tip.hidden = false;
    });
    canvas.addEventListener("mouseleave", function () { tip.hidden = true; });
  }
  function goToHash() {
    var m = /(?:^#|&)mm=(-?[\d.]+),(-?[\d.]+),(-?[\d.]+)/.exec(location.hash);
    if (m) api.moveTo([Number(m[1]), Number(m[2]), Number(m[3])]);
    return Boolean(m);
  }

  setState("loading");
  nv.onLocationChange = function (location) {
    if (!api.ready) return;
    readout([location.mm[0], location.mm[1], location.mm[2]]);
    queueMarkers();
  };
  var draw = nv.drawScene.bind(nv);
  nv.drawScene = function () { var result = draw.apply(null, arguments); queueMarkers(); return result; };
  nv.attachToCanvas(canvas).then(function () {
    var image = {url: config.image, colormap: "gray"};
    if (first) { image.cal_min = first[0]; image.cal_max = first[1]; }
    return nv.loadVolumes([image, {url: config.labels, opacity: config.opacity}]);
  }).then(function () {
    mark("volumes");
    if (nv.volumes.length !== 2) throw new Error("the scan or its labels did not load");
    api.labels = new Grid(nv.volumes[1]);
    api.components = lesionComponents(api.labels);
    mark("lesion_components");
    if (!nv.volumes[1].colormapLabel) setClasses();  // (NiiVue did not call onVolumeAddedFromUrl)
    bindControls();
    api.ready = true;
    window.addEventListener("hashchange", goToHash);
    if (!goToHash()) {
      var start = config.lesions.length ? config.lesions[0].centroid : (config.cord_worst || null);
      if (start) api.moveTo(start); else { nv.createOnLocationChange(); readout(api.crosshairMM()); }
    }
    readout(api.crosshairMM());
    mark("ready");
    setState("ready");
  }).catch(function (err) {
    api.error = String(err && err.message ? err.message : err);
    setState("error", "The viewer could not load this case: " + api.error);
  });
})();
