/* The upload page: files and folders into one dataset, resumable, with tus-js-client (vendored in
   vendor/tus-js-client/) against the server's tus endpoint, /api/v1/uploads/.

   Each file is one tus upload, a few at a time; the browser streams it from disk (the page never
   reads a file into memory). A dropped connection is retried from where the server's bytes end;
   a network that goes down resumes when it is back; a reload resumes once the same file is
   picked again (tus-js-client keeps each upload's address in localStorage). A file the server
   refuses (already there, a name it does not take) says why, with no Retry: retrying could
   not help. Every file has its progress bar, the whole upload has one with speed and time left;
   the page warns before it is left mid-upload, and shows the dataset's file count and each
   transfer's state as they change. The requests carry the session's CSRF token, which the API
   accepts in place of an API key. */
(function () {
  "use strict";

  var root = document.getElementById("uploader");
  if (!root) return;

  var datasetId = root.dataset.datasetId;
  var uploadUrl = root.dataset.uploadUrl;
  var datasetUrl = root.dataset.datasetUrl;
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
  var fileCount = document.getElementById("file-count");
  var onward = document.getElementById("onward");

  var WAITING = "waiting", SENDING = "uploading", SENT = "uploaded", FAILED = "failed";
  var ENDED = ["done", "failed"];
  // One request per 64 MiB: what a request cut off (by a proxy that keeps no partial body)
  // can lose. The server itself keeps what arrived and checkpoints every 16 MiB within one.
  var CHUNK_BYTES = 64 * 1024 * 1024;
  var RETRY_DELAYS = [0, 1000, 3000, 6000];
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
      retryable: false, offline: false, upload: null,
      transferState: null, transferError: "", view: {}
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

  function status(error) {
    return error && error.originalResponse ? error.originalResponse.getStatus() : 0;
  }

  function method(error) {
    return error && error.originalRequest ? error.originalRequest.getMethod() : "";
  }

  // What the server said, in its words (its errors are JSON with a message).
  function message(error) {
    var code = status(error);
    if (code === 0) {
      return navigator.onLine ? "the connection to the server was lost"
        : "the network is down: the upload goes on when it is back";
    }
    try {
      var body = JSON.parse(error.originalResponse.getBody());
      if (body && body.message) return body.message;
    } catch (ignored) { /* not JSON: say the status below */ }
    if (code === 413) return "the file is larger than this server accepts";
    return "the server answered " + code;
  }

  // Whether trying again can ever help: not when the server refused the file itself (it is
  // already there, its name or folder is not allowed, it is too large, the dataset is gone),
  // nor when the session ended (its CSRF token is gone with it: log in and reload instead).
  function retryable(error) {
    var code = status(error);
    if (code === 0 || code >= 500 || code === 423 || code === 410) return true;
    // A 409 while resuming: the offset moved, or a dropped request still holds the upload.
    return code === 409 && method(error) !== "POST";
  }

  // tus-js-client's own retries (with its delays): lost connections and busy servers only.
  function retryAutomatically(error) {
    return navigator.onLine && retryable(error);
  }

  function failed(item, error) {
    item.state = FAILED;
    item.error = message(error);
    item.retryable = retryable(error);
    item.offline = status(error) === 0;
    if (status(error) === 401) item.error += " (log in again, then reload this page: the upload resumes)";
    pump();
  }

  // tus-js-client remembers each upload's address (in localStorage) under this key, so that a
  // reload, or the same file picked again, resumes it. It names the dataset and the path: the
  // same file sent to another dataset or folder is another upload.
  function fingerprint(item) {
    return function (file, options) {
      return Promise.resolve(JSON.stringify(
        ["dataflow-lite", datasetId, item.path, file.size, file.lastModified, options.endpoint]
      ));
    };
  }

  function upload(item) {
    return new tus.Upload(item.file, {
      endpoint: uploadUrl,
      headers: { "X-CSRFToken": csrfToken, "Accept": "application/json" },
      metadata: {
        dataset_id: datasetId,
        relative_path: item.folder,
        filename: item.file.name,
        filetype: item.file.type
      },
      chunkSize: CHUNK_BYTES,
      retryDelays: RETRY_DELAYS,
      onShouldRetry: retryAutomatically,
      fingerprint: fingerprint(item),
      removeFingerprintOnSuccess: true,
      onProgress: function (sent) {
        item.loaded = sent;
        render();
      },
      onError: function (error) { failed(item, error); },
      onSuccess: function () {
        item.state = SENT;
        item.loaded = item.file.size;
        pump();
        pollSoon(300);
      }
    });
  }

  function send(item) {
    item.state = SENDING;
    item.error = "";
    if (item.upload) {
      item.upload.start();  // a retry: it asks the server where the upload stands, sends the rest
      return;
    }
    item.upload = upload(item);
    item.upload.findPreviousUploads().then(function (previous) {
      if (previous.length) item.upload.resumeFromPreviousUpload(previous[0]);
      item.upload.start();
    });
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
    // The way on, once nothing is left to send.
    onward.hidden = sent === 0 || unfinished();
    items.forEach(drawItem);
  }

  function drawItem(item) {
    var view = item.view;
    var percent = item.state === SENT ? 100
      : item.file.size > 0 ? Math.min(99, Math.floor(100 * item.loaded / item.file.size)) : 0;
    view.bar.value = percent;
    view.percent.textContent = percent + " %";
    view.status.textContent = item.state !== FAILED ? item.state
      : (item.retryable ? "failed: " : "not uploaded: ") + item.error;
    view.row.className = "state-" + item.state;
    view.retry.hidden = !(item.state === FAILED && item.retryable);
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

  // The dataset's files and their transfers, as uploads finish -------------------------------

  function pollSoon(delay) {
    if (!pollTimer) pollTimer = setTimeout(poll, delay);
  }

  function moving() {
    return unfinished() || items.some(function (item) {
      return item.state === SENT && ENDED.indexOf(item.transferState) < 0;
    });
  }

  function getJson(url) {
    return fetch(url, {
      headers: { "X-CSRFToken": csrfToken, "Accept": "application/json" },
      credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) throw new Error("the server answered " + response.status);
      return response.json();
    });
  }

  function pathOf(file) {
    return file.relative_path ? file.relative_path + "/" + file.name : file.name;
  }

  function poll() {
    pollTimer = null;
    Promise.all([
      getJson(datasetUrl),
      getJson(transfersUrl + "?dataset_id=" + encodeURIComponent(datasetId))
    ]).then(function (answers) {
      var files = answers[0].dataset_files.filter(function (file) { return !file.is_directory; });
      fileCount.textContent = files.length + " file" + (files.length === 1 ? "" : "s");
      var byPath = new Map(files.map(function (file) { return [pathOf(file), file]; }));
      var latest = new Map();  // the newest transfer of each file (they come newest first)
      answers[1].forEach(function (transfer) {
        if (transfer.file_id !== null && !latest.has(transfer.file_id)) latest.set(transfer.file_id, transfer);
      });
      items.forEach(function (item) {
        var file = item.state === SENT ? byPath.get(item.path) : null;
        if (!file) return;
        var transfer = latest.get(file.id);
        item.transferState = transfer ? transfer.state : file.transfer_state;
        item.transferError = transfer && transfer.state === "failed" ? transfer.last_error || "" : "";
      });
      render();
    }).catch(function () { /* asked again below */ }).then(function () {
      if (moving()) pollSoon(1500);
    });
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
  // The network is back: files it cut off go on from where the server's bytes end.
  window.addEventListener("online", function () {
    items.forEach(function (item) {
      if (item.state === FAILED && item.offline) item.state = WAITING;
    });
    pump();
  });
  window.addEventListener("beforeunload", function (event) {
    if (unfinished()) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
})();
