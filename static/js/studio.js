// Progressive enhancement for the job form: without this file every field shows and the
// server decides; with it, only the chosen path's fields show.
(function () {
  "use strict";

  function chosen(form, name) {
    const checked = form.querySelector('input[name="' + name + '"]:checked');
    return checked ? checked.value : null;
  }

  function updateSections(form) {
    form.querySelectorAll("[data-when]").forEach(function (section) {
      const parts = section.dataset.when.split("=");
      section.hidden = chosen(form, parts[0]) !== parts[1];
    });
    // Fields of the path not chosen are not submitted, so they cannot contradict it.
    form.querySelectorAll("[data-when] input, [data-when] select, [data-when] textarea")
      .forEach(function (el) { el.disabled = Boolean(el.closest("[data-when][hidden]")); });
  }

  function updateCounter(counter) {
    const field = document.getElementById(counter.dataset.counterFor);
    if (!field) return;
    const max = parseInt(counter.dataset.max, 10);
    const used = Array.from(field.value.trim().replace(/\s+/g, " ")).length;
    counter.textContent = used + " / " + max;
    counter.classList.toggle("over", used > max);
  }

  function matchLanguageToVoice(form) {
    const data = document.getElementById("voice-languages");
    const voice = form.querySelector("#id_voice_id");
    const language = form.querySelector("#id_voice_language");
    if (!data || !voice || !language) return;
    const languages = JSON.parse(data.textContent)[voice.value];
    if (languages && languages.indexOf(language.value) === -1) {
      language.value = languages[0];
    }
  }

  function init() {
    const form = document.querySelector("form.job-form");
    if (!form) return;
    form.addEventListener("change", function (event) {
      if (event.target.type === "radio") updateSections(form);
      if (event.target.id === "id_voice_id") matchLanguageToVoice(form);
    });
    form.querySelectorAll("[data-counter-for]").forEach(function (counter) {
      const field = document.getElementById(counter.dataset.counterFor);
      if (field) {
        field.removeAttribute("maxlength"); // count past the limit and say so, rather than cut
        field.addEventListener("input", function () { updateCounter(counter); });
        field.setAttribute("aria-describedby", (field.getAttribute("aria-describedby") || "") + " " + counter.id);
      }
      updateCounter(counter);
    });
    // A second click while the first submit is on its way would only find the same job,
    // but the person deserves to see that something is happening.
    form.addEventListener("submit", function () {
      const button = form.querySelector('button[type="submit"]');
      if (button) button.disabled = true;
    });
    window.addEventListener("pageshow", function () {
      const button = form.querySelector('button[type="submit"]');
      if (button) button.disabled = false;
    });
    updateSections(form);
  }

  // A poll that fails (the server restarting, the database busy) keeps the last good status on
  // screen and says it is reconnecting; htmx keeps polling and the next good answer clears it.
  function markStale(event) {
    const target = event.detail && event.detail.elt;
    if (target && target.id === "job-status") target.classList.add("stale");
  }
  // Once the studio has checked and kept an uploaded video, the page carries a token of it:
  // empty the file box so the submit does not send the file a second time.
  let keptUpload = "";
  document.addEventListener("htmx:afterSettle", function () {
    const check = document.getElementById("video-check");
    const file = document.getElementById("id_video_file");
    const kept = check ? check.dataset.staged || "" : "";
    if (file && kept && kept !== keptUpload) {
      keptUpload = kept;
      file.value = "";
    }
  });
  document.addEventListener("htmx:responseError", markStale);
  document.addEventListener("htmx:sendError", markStale);

  // Desktop notifications, asked for only after a click, remembered on this computer: when a
  // job ends while its page is open, the page's poll swaps in an ended status card.
  const NOTIFY_KEY = "studio.notify";
  function notifyWanted() {
    return "Notification" in window && Notification.permission === "granted" &&
      window.localStorage.getItem(NOTIFY_KEY) === "1";
  }
  function offerNotifications() {
    const offer = document.querySelector(".notify-offer");
    if (!offer || !("Notification" in window)) return;
    offer.hidden = notifyWanted() || Notification.permission === "denied";
  }
  document.addEventListener("click", function (event) {
    const button = event.target.closest && event.target.closest("[data-notify-opt-in]");
    if (!button) return;
    Notification.requestPermission().then(function (permission) {
      if (permission === "granted") window.localStorage.setItem(NOTIFY_KEY, "1");
      offerNotifications();
    });
  });
  // Only a poll can end a job on this page, so an ended card after a swap ended just now.
  let announced = false;
  document.addEventListener("htmx:afterSettle", function () {
    const card = document.getElementById("job-status");
    if (!card) return;
    offerNotifications();
    if (announced || !card.dataset.ended || !notifyWanted()) return;
    announced = true;
    const note = new Notification(card.dataset.ended, {
      body: card.dataset.endedDetail || "",
      tag: card.dataset.jobUrl,
    });
    note.onclick = function () {
      window.focus();
      window.location.href = card.dataset.jobUrl;
    };
  });

  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("DOMContentLoaded", offerNotifications);
})();
