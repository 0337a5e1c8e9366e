// Countdowns to deadlines, and a page that refreshes itself while it is being watched,
// never while someone is filling in a form on it. Without script the page still works.
"use strict";

function describe(seconds, lang) {
  const late = seconds < 0;
  let left = Math.abs(Math.round(seconds));
  const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
  const span = (h ? h + " h " : "") + (h || m ? m + " min " : "") + (h ? "" : s + " s");
  if (lang === "es") return late ? "vencido hace " + span : "en " + span;
  return late ? "overdue by " + span : "in " + span;
}

function tick() {
  const lang = document.documentElement.lang;
  for (const el of document.querySelectorAll("time[data-countdown]")) {
    if (!el.title) el.title = el.textContent;
    const seconds = (Date.parse(el.getAttribute("datetime")) - Date.now()) / 1000;
    el.textContent = describe(seconds, lang);
  }
}

function busy() {
  const active = document.activeElement;
  if (active && active.closest("form")) return true;
  for (const field of document.querySelectorAll("textarea, input[type=text], input:not([type])")) {
    if (field.value) return true;
  }
  return !!document.querySelector("input[type=radio]:checked");
}

document.addEventListener("DOMContentLoaded", () => {
  // A page answering a form names the address that shows it again, so that a reload reads
  // the follow-up rather than sending the form twice.
  if (document.body.dataset.url) history.replaceState(null, "", document.body.dataset.url);
  tick();
  setInterval(tick, 1000);
  const every = Number(document.body.dataset.refresh || 0);
  if (every) {
    setInterval(() => { if (!busy()) window.location.reload(); }, every * 1000);
  }
});
