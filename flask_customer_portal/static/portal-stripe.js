/* flask-customer-portal: Stripe Elements on the payment-method page.
   Mounts Stripe's card element in the new-card fieldset (data-stripe-card,
   with the publishable key in data-publishable-key). When the form is sent
   with "A new card" chosen, the card becomes a Stripe PaymentMethod in the
   browser and only its id goes to the server, in the hidden payment_token
   field. Card numbers never reach the portal. */
(function () {
  "use strict";

  function start() {
    var box = document.querySelector("[data-stripe-card]");
    if (!box || typeof window.Stripe !== "function") { return; }
    var form = box.closest("form");
    var mount = document.getElementById("stripe-card-element");
    var errors = document.getElementById("stripe-card-errors");
    var tokenField = document.getElementById("payment-token");
    if (!form || !mount || !errors || !tokenField) { return; }

    var stripe = window.Stripe(box.getAttribute("data-publishable-key"));
    var card = stripe.elements().create("card", { hidePostalCode: true });
    card.mount(mount);
    card.on("change", function (event) {
      errors.textContent = event.error ? event.error.message : "";
    });

    var busy = false;
    form.addEventListener("submit", function (event) {
      // A radio on a subscription's page; a hidden field where only a new card is taken.
      var choice = form.querySelector("input[name=payment_method]:checked, input[type=hidden][name=payment_method]");
      if (!choice || choice.value !== "new" || tokenField.value) { return; }
      event.preventDefault();
      if (busy) { return; }
      busy = true;
      errors.textContent = "";
      stripe.createPaymentMethod({ type: "card", card: card }).then(function (result) {
        busy = false;
        if (result.error || !result.paymentMethod) {
          errors.textContent = (result.error && result.error.message) || box.getAttribute("data-card-error");
          return;
        }
        tokenField.value = result.paymentMethod.id;
        form.submit();
      }, function () {
        busy = false;
        errors.textContent = box.getAttribute("data-card-error");
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
