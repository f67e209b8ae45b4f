/* flask-customer-portal: the tax ID field's hint follows the kind of tax ID
   (or, for "the usual one of the country", the country) chosen, so the
   example is always the one of the number asked for. Progressive
   enhancement only: without this file the hint shows the example of the
   kind chosen when the page was made. The examples and the translated
   hint come from the page (#tax-id-examples). */
(function () {
  "use strict";

  function start() {
    var data = document.getElementById("tax-id-examples");
    var hint = document.getElementById("tax_id-hint");
    var scheme = document.getElementById("tax_id_scheme");
    var country = document.getElementById("country");
    if (!data || !hint || !scheme) { return; }
    var examples = JSON.parse(data.textContent);

    function update() {
      var example = scheme.value
        ? examples.schemes[scheme.value]
        : (country ? examples.countries[country.value] : undefined);
      hint.textContent = example ? examples.template.replace("{example}", example) : examples.optional;
    }

    scheme.addEventListener("change", update);
    if (country) { country.addEventListener("change", update); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
