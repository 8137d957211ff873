// Progressive enhancement for the bundle upload (#add-program on /console/programs): the form is sent with
// XMLHttpRequest so that a progress bar shows how much of the bundle has gone; the page the server answers with (its
// notice or refusal) then replaces the main block. Without JavaScript the form posts as a plain form and works the same.
(function () {
  "use strict";

  function megabytes(n) { return (n / 1048576).toFixed(1) + " MB"; }

  function enhance() {
    var form = document.getElementById("add-program");
    var bar = document.getElementById("upload-progress");
    var text = document.getElementById("upload-progress-text");
    if (!form || !bar || !text || !window.XMLHttpRequest || !window.FormData || !window.DOMParser) { return; }
    form.addEventListener("submit", function (e) {
      if (!form.checkValidity()) { return; }
      e.preventDefault();
      var button = form.querySelector("button[type=submit]");
      var xhr = new XMLHttpRequest();
      button.disabled = true;
      bar.hidden = false;
      bar.value = 0;
      text.hidden = false;
      text.textContent = "Uploading…";
      xhr.upload.addEventListener("progress", function (p) {
        if (!p.lengthComputable) { return; }
        bar.max = p.total;
        bar.value = p.loaded;
        text.textContent = "Uploaded " + megabytes(p.loaded) + " of " + megabytes(p.total) + " (" + Math.floor(100 * p.loaded / p.total) + " %)";
      });
      xhr.upload.addEventListener("load", function () { text.textContent = "Uploaded; the server checks the bundle…"; });
      xhr.addEventListener("load", function () {
        var page = new DOMParser().parseFromString(xhr.responseText, "text/html");
        var main = page.getElementById("main");
        if (!main) {
          text.textContent = "The server answered " + xhr.status + "; reload the page to see what was kept.";
          button.disabled = false;
          return;
        }
        if (xhr.responseURL) { history.replaceState(null, "", xhr.responseURL); }
        document.title = page.title;
        document.getElementById("main").replaceWith(main);
        enhance();
      });
      xhr.addEventListener("error", function () {
        text.textContent = "The upload was interrupted; nothing was added. Try again.";
        button.disabled = false;
      });
      xhr.open("POST", form.action);
      xhr.send(new FormData(form));
    });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", enhance); } else { enhance(); }
})();
