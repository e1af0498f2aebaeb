/* Small helpers every page may use: copy buttons, the extra metadata rows of the wizard, the
   options of the chosen adapter on the admin endpoints page, and a dataset's live file list. */
(function () {
  "use strict";

  // <button data-copy="#input-id">: copies the input's text, and says so.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var input = document.querySelector(button.dataset.copy);
      if (!input) return;
      var done = function () {
        var label = button.textContent;
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = label; }, 2000);
      };
      input.focus();
      input.select();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(done, function () {
          if (document.execCommand("copy")) done();
        });
      } else if (document.execCommand("copy")) {
        done();
      }
    });
  });

  // The wizard's "Add a row" button: one more name/value row for other metadata.
  var addRow = document.getElementById("add-extra-row");
  var rows = document.getElementById("extra-rows");
  if (addRow && rows) {
    addRow.hidden = false;
    addRow.addEventListener("click", function () {
      var last = rows.querySelector(".extra-row:last-child");
      var row = last.cloneNode(true);
      var index = rows.querySelectorAll(".extra-row").length + 1;
      row.classList.remove("invalid");
      row.querySelectorAll(".field-error").forEach(function (node) { node.remove(); });
      row.querySelectorAll("input").forEach(function (input) {
        var id = input.id.replace(/\d+$/, String(index));
        var label = row.querySelector('label[for="' + input.id + '"]');
        input.id = id;
        input.value = "";
        input.removeAttribute("aria-invalid");
        if (input.name === "extra_value") input.removeAttribute("aria-describedby");
        if (label) {
          label.htmlFor = id;
          var hidden = label.querySelector(".visually-hidden");
          if (hidden) hidden.textContent = hidden.textContent.replace(/\d+$/, String(index));
        }
      });
      rows.appendChild(row);
      row.querySelector("input").focus();
    });
  }

  // The endpoint form's type: only the chosen adapter's options are shown, required and sent
  // (a disabled fieldset is neither validated nor submitted). Without scripts, all are shown.
  var adapterSelect = document.querySelector("select[data-adapter-select]");
  if (adapterSelect) {
    var showChosen = function () {
      document.querySelectorAll("fieldset[data-adapter]").forEach(function (fieldset) {
        var chosen = fieldset.dataset.adapter === adapterSelect.value;
        fieldset.hidden = !chosen;
        fieldset.disabled = !chosen;
      });
    };
    document.querySelectorAll('fieldset[data-adapter] [aria-required="true"]').forEach(
      function (input) { input.required = true; }
    );
    adapterSelect.addEventListener("change", showChosen);
    showChosen();
  }

  // A dataset page whose transfers may still move (<section id="files" data-moving>) fetches
  // itself every few seconds and redraws its file list (states, progress, download links) from
  // the server's own rendering, until nothing moves. A hidden tab waits; a failed fetch retries.
  var files = document.querySelector("section#files[data-moving]");
  if (files && window.fetch && window.DOMParser) {
    var redraw = function () {
      if (document.hidden) { setTimeout(redraw, 2000); return; }
      fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) { return response.ok ? response.text() : Promise.reject(); })
        .then(function (text) {
          var fresh = new DOMParser().parseFromString(text, "text/html").querySelector("section#files");
          if (!fresh) return;
          files.innerHTML = fresh.innerHTML;
          if (fresh.hasAttribute("data-moving")) setTimeout(redraw, 2000);
          else files.removeAttribute("data-moving");
        })
        .catch(function () { setTimeout(redraw, 5000); });
    };
    setTimeout(redraw, 2000);
  }
})();
