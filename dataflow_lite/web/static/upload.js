/* The upload page: files and folders into one dataset through POST /api/v1/dataset-file-upload.

   Each file goes in its own request (XMLHttpRequest + FormData, which the browser streams from
   disk: the page never reads a file into memory), a few at a time. Every file has its progress
   bar, the whole upload has one with speed and time left; a failed file is retried alone; the
   page warns before it is left mid-upload, and shows each file's transfer state afterwards. The
   requests carry the session's CSRF token, which the API accepts in place of an API key. */
(function () {
  "use strict";

  var root = document.getElementById("uploader");
  if (!root) return;

  var datasetId = root.dataset.datasetId;
  var uploadUrl = root.dataset.uploadUrl;
  var transfersUrl = root.dataset.transfersUrl;
  var parallel = Number(root.dataset.parallel) || 3;
  var csrfToken = document.querySelector('meta[name="csrf-token"]').content;

  var dropzone = document.getElementById("dropzone");
  var fileInput = document.getElementById("file-input");
  var folderInput = document.getElementById("folder-input");
  var table = document.getElementById("upload-table");
  var list = document.getElementById("upload-list");
  var overall = document.getElementById("overall");
  var overallBar = document.getElementById("overall-progress");
  var overallPercent = document.getElementById("overall-percent");
  var overallBytes = document.getElementById("overall-bytes");
  var overallSpeed = document.getElementById("overall-speed");
  var overallEta = document.getElementById("overall-eta");
  var overallSummary = document.getElementById("overall-summary");

  var WAITING = "waiting", SENDING = "uploading", SENT = "uploaded", FAILED = "failed";
  var ENDED = ["done", "failed"];
  var items = [];
  var paths = new Set();
  var samples = [];  // [time in ms, bytes sent] over the last seconds, for the speed
  var renderQueued = false;
  var pollTimer = null;
  var sampler = null;
  var lastSummary = "";

  // Words -----------------------------------------------------------------------------------

  function bytes(size) {
    var units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    var value = size, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return unit === 0 ? size + " bytes" : value.toFixed(1) + " " + units[unit];
  }

  function duration(seconds) {
    if (!isFinite(seconds)) return "";
    seconds = Math.ceil(seconds);
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + (seconds % 60) + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  // Adding files ----------------------------------------------------------------------------

  function cell(row, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function addFile(file, folder) {
    var path = folder ? folder + "/" + file.name : file.name;
    if (paths.has(path)) return;  // the same file twice: the server would refuse the second
    paths.add(path);
    var item = {
      file: file, folder: folder, path: path, state: WAITING, loaded: 0, error: "",
      transferId: null, transferState: null, transferError: "", xhr: null, view: {}
    };
    var row = document.createElement("tr");
    row.dataset.path = path;
    var name = cell(row, "path");
    name.textContent = path;
    cell(row, "num").textContent = bytes(file.size);
    var upload = cell(row, "upload-cell");
    item.view.bar = document.createElement("progress");
    item.view.bar.max = 100;
    item.view.bar.value = 0;
    item.view.bar.setAttribute("aria-label", "Upload of " + path);
    item.view.percent = document.createElement("span");
    item.view.percent.className = "percent";
    item.view.status = document.createElement("span");
    item.view.status.className = "status";
    item.view.retry = document.createElement("button");
    item.view.retry.type = "button";
    item.view.retry.className = "button small";
    item.view.retry.textContent = "Retry";
    item.view.retry.setAttribute("aria-label", "Retry " + path);
    item.view.retry.hidden = true;
    item.view.retry.addEventListener("click", function () {
      item.state = WAITING;
      item.error = "";
      item.loaded = 0;
      pump();
    });
    upload.append(item.view.bar, item.view.percent, item.view.status, item.view.retry);
    item.view.transfer = cell(row, "transfer-cell");
    list.appendChild(row);
    item.view.row = row;
    items.push(item);
  }

  function folderOf(relativePath) {
    var parts = relativePath.split("/");
    parts.pop();
    return parts.join("/");
  }

  function addFiles(files, fromFolderInput) {
    Array.prototype.forEach.call(files, function (file) {
      addFile(file, fromFolderInput ? folderOf(file.webkitRelativePath || file.name) : "");
    });
    table.hidden = items.length === 0;
    overall.hidden = items.length === 0;
    pump();
  }

  // A dropped folder: every file below it, with its path (readEntries answers in batches).
  function walk(entry, found) {
    if (entry.isFile) {
      return new Promise(function (resolve) {
        entry.file(function (file) {
          found.push({ file: file, folder: folderOf(entry.fullPath.replace(/^\/+/, "")) });
          resolve();
        }, function () { resolve(); });
      });
    }
    if (!entry.isDirectory) return Promise.resolve();
    var reader = entry.createReader();
    return new Promise(function (resolve) {
      var all = [];
      (function more() {
        reader.readEntries(function (batch) {
          if (!batch.length) {
            Promise.all(all.map(function (child) { return walk(child, found); })).then(resolve);
            return;
          }
          all = all.concat(Array.prototype.slice.call(batch));
          more();
        }, function () { resolve(); });
      })();
    });
  }

  function dropped(event) {
    event.preventDefault();
    dropzone.classList.remove("over");
    var transfer = event.dataTransfer;
    if (!transfer) return;
    var entries = [], plain = [];
    // Entries must be taken while the event lasts: the list is emptied afterwards.
    Array.prototype.forEach.call(transfer.items || [], function (item) {
      if (item.kind !== "file") return;
      var entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
      if (entry) entries.push(entry);
      else if (item.getAsFile()) plain.push(item.getAsFile());
    });
    if (!entries.length && !plain.length && transfer.files) plain = Array.prototype.slice.call(transfer.files);
    var found = [];
    Promise.all(entries.map(function (entry) { return walk(entry, found); })).then(function () {
      found.forEach(function (hit) { addFile(hit.file, hit.folder); });
      addFiles(plain, false);
    });
  }

  // Sending ---------------------------------------------------------------------------------

  function sending() {
    return items.filter(function (item) { return item.state === SENDING; }).length;
  }

  function unfinished() {
    return items.some(function (item) { return item.state === WAITING || item.state === SENDING; });
  }

  function pump() {
    while (sending() < parallel) {
      var next = items.find(function (item) { return item.state === WAITING; });
      if (!next) break;
      send(next);
    }
    if (unfinished() && !sampler) {
      samples = [];
      sampler = setInterval(sample, 500);
    }
    render();
  }

  function message(xhr) {
    var body = xhr.response;
    if (body && typeof body === "object" && body.message) return body.message;
    if (xhr.status === 413) return "the file is larger than this server accepts";
    return "the server answered " + xhr.status + " " + (xhr.statusText || "");
  }

  function failed(item, why) {
    item.state = FAILED;
    item.error = why;
    item.loaded = 0;
    item.xhr = null;
    pump();
  }

  function send(item) {
    item.state = SENDING;
    item.loaded = 0;
    item.error = "";
    var form = new FormData();
    form.append("dataset_id", datasetId);
    form.append("relative_path", item.folder);
    form.append("file", item.file, item.file.name);
    var xhr = new XMLHttpRequest();
    item.xhr = xhr;
    xhr.open("POST", uploadUrl);
    xhr.responseType = "json";
    xhr.setRequestHeader("X-CSRFToken", csrfToken);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable && event.total > 0) {
        // The body holds a little more than the file (the form's fields and boundaries).
        item.loaded = Math.min(item.file.size, item.file.size * event.loaded / event.total);
        render();
      }
    });
    xhr.addEventListener("load", function () {
      if (xhr.status !== 201) {
        failed(item, message(xhr));
        return;
      }
      item.state = SENT;
      item.loaded = item.file.size;
      item.xhr = null;
      item.transferId = xhr.response.transfer_id;
      item.transferState = xhr.response.transfer_state;
      pump();
      pollSoon(500);
    });
    xhr.addEventListener("error", function () {
      failed(item, "the connection to the server was lost");
    });
    xhr.addEventListener("abort", function () { failed(item, "cancelled"); });
    xhr.send(form);
  }

  // Showing progress ------------------------------------------------------------------------

  function totals() {
    var total = 0, loaded = 0;
    items.forEach(function (item) {
      total += item.file.size;
      loaded += item.state === SENT ? item.file.size : item.loaded;
    });
    return { total: total, loaded: loaded };
  }

  function sample() {
    samples.push([Date.now(), totals().loaded]);
    while (samples.length > 1 && Date.now() - samples[0][0] > 5000) samples.shift();
    if (!unfinished()) {
      clearInterval(sampler);
      sampler = null;
    }
    render();
  }

  function speed() {
    if (samples.length < 2) return 0;
    var first = samples[0], last = samples[samples.length - 1];
    var seconds = (last[0] - first[0]) / 1000;
    return seconds > 0 ? Math.max(0, (last[1] - first[1]) / seconds) : 0;
  }

  function render() {
    if (renderQueued) return;
    renderQueued = true;
    window.requestAnimationFrame(function () {
      renderQueued = false;
      draw();
    });
  }

  function draw() {
    var sums = totals();
    var sent = items.filter(function (item) { return item.state === SENT; }).length;
    var broken = items.filter(function (item) { return item.state === FAILED; }).length;
    var everything = items.length > 0 && sent === items.length;
    var percent = sums.total > 0 ? Math.floor(100 * sums.loaded / sums.total) : 0;
    percent = everything ? 100 : Math.min(percent, 99);
    overallBar.value = percent;
    overallPercent.textContent = percent + " %";
    overallBytes.textContent = bytes(sums.loaded) + " of " + bytes(sums.total);
    var rate = unfinished() ? speed() : 0;
    overallSpeed.textContent = rate > 0 ? bytes(rate) + "/s" : "";
    overallEta.textContent = rate > 0 ? "about " + duration((sums.total - sums.loaded) / rate) + " left" : "";
    var summary = sent + " of " + items.length + " file" + (items.length === 1 ? "" : "s") + " uploaded";
    if (broken) summary += ", " + broken + " failed";
    if (everything) summary += ": all files are uploaded.";
    if (summary !== lastSummary) {
      overallSummary.textContent = summary;
      lastSummary = summary;
    }
    items.forEach(drawItem);
  }

  function drawItem(item) {
    var view = item.view;
    var percent = item.state === SENT ? 100
      : item.file.size > 0 ? Math.min(99, Math.floor(100 * item.loaded / item.file.size)) : 0;
    view.bar.value = percent;
    view.percent.textContent = percent + " %";
    view.status.textContent = item.state === FAILED ? "failed: " + item.error : item.state;
    view.row.className = "state-" + item.state;
    view.retry.hidden = item.state !== FAILED;
    var transfer = item.transferState;
    view.transfer.textContent = "";
    if (transfer) {
      var badge = document.createElement("span");
      badge.className = "badge state-" + transfer;
      badge.textContent = transfer;
      view.transfer.appendChild(badge);
      if (item.transferError) {
        var why = document.createElement("span");
        why.className = "small-text";
        why.textContent = " " + item.transferError;
        view.transfer.appendChild(why);
      }
    } else {
      view.transfer.textContent = "—";
    }
  }

  // Transfer states after the upload ---------------------------------------------------------

  function pollSoon(delay) {
    if (!pollTimer) pollTimer = setTimeout(poll, delay);
  }

  function poll() {
    pollTimer = null;
    var moving = items.some(function (item) {
      return item.transferId && ENDED.indexOf(item.transferState) < 0;
    });
    if (!moving) return;
    fetch(transfersUrl + "?dataset_id=" + encodeURIComponent(datasetId), {
      headers: { "X-CSRFToken": csrfToken, "Accept": "application/json" },
      credentials: "same-origin"
    }).then(function (response) {
      return response.ok ? response.json() : [];
    }).then(function (transfers) {
      var byId = new Map(transfers.map(function (transfer) { return [transfer.id, transfer]; }));
      items.forEach(function (item) {
        var transfer = byId.get(item.transferId);
        if (transfer) {
          item.transferState = transfer.state;
          item.transferError = transfer.last_error || "";
        }
      });
      render();
    }).catch(function () { /* try again below */ }).then(function () { pollSoon(1500); });
  }

  // Wiring ----------------------------------------------------------------------------------

  fileInput.addEventListener("change", function () {
    addFiles(fileInput.files, false);
    fileInput.value = "";
  });
  folderInput.addEventListener("change", function () {
    addFiles(folderInput.files, true);
    folderInput.value = "";
  });
  ["dragenter", "dragover"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
      dropzone.classList.add("over");
    });
  });
  document.addEventListener("dragleave", function (event) {
    if (!event.relatedTarget) dropzone.classList.remove("over");
  });
  document.addEventListener("drop", dropped);
  window.addEventListener("beforeunload", function (event) {
    if (unfinished()) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
})();
