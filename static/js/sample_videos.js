// "Try a sample video" (demo mode): a click fills the form's video link with the sample and
// lets the form check it as if the person had typed it. Without this file each link opens the
// form filled in with that sample.
(function () {
  "use strict";

  function useSample(link) {
    const form = link.closest("form.job-form") || document.querySelector("form.job-form");
    const field = form && form.querySelector('[name="video_url"]');
    const choice = form && form.querySelector('input[name="video_source"][value="video_url"]');
    if (!field || !choice) return false;
    if (!choice.checked) {
      choice.checked = true;
      choice.dispatchEvent(new Event("change", { bubbles: true }));
    }
    field.disabled = false;
    field.value = link.dataset.sampleUrl;
    field.dispatchEvent(new Event("input", { bubbles: true }));
    field.dispatchEvent(new Event("change", { bubbles: true }));
    field.focus();
    return true;
  }

  document.addEventListener("click", function (event) {
    const link = event.target.closest && event.target.closest("a[data-sample-url]");
    if (link && useSample(link)) event.preventDefault();
  });
})();
