// Keyboard shortcuts for the review page. The page works without them: every key clicks
// or sets a control that is also on the page.
document.addEventListener("keydown", function (e) {
  var note = document.getElementById("note");
  if (document.activeElement === note) {
    if (e.key === "Escape") { note.blur(); e.preventDefault(); }
    else if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { document.getElementById("save").click(); e.preventDefault(); }
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) { return; }
  var click = function (id) { var el = document.getElementById(id); if (el) { el.click(); e.preventDefault(); } };
  switch (e.key) {
    case "a": click("agree"); break;
    case "d": click("disagree"); break;
    case "s": click("save"); break;
    case "j": click("next"); break;
    case "k": click("prev"); break;
    case "n": if (note) { note.focus(); e.preventDefault(); } break;
    default:
      var radio = document.querySelector('input[type=radio][data-key="' + e.key + '"]');
      if (radio) { radio.checked = true; e.preventDefault(); }
  }
});
