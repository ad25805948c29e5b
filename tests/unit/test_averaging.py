"""The weight-averaging protocol decides the final weights: the EMA when it is on, SWA once it
has averaged an epoch, and for early stopping the weights its metric measures."""

from torch import nn

from cnnlab.regularization.averaging import final_weights, watched_weights
from cnnlab.regularization.ema import WeightEma
from cnnlab.regularization.swa import WeightAverage


def test_with_ema_on_the_final_weights_are_the_ema():
    model = nn.Linear(2, 2)
    ema = WeightEma(model, decay=0.9)
    chosen = final_weights(model, [ema])
    assert chosen.module is ema.model and chosen.label == "ema"
    assert final_weights(model, []).module is model and final_weights(model, []).label == "raw"


def test_swa_is_the_final_weights_only_once_it_has_averaged_an_epoch():
    model = nn.Linear(2, 2)
    swa = WeightAverage(model, start_epoch=2)
    swa.after_epoch(model, 1)  # before start_epoch: not collected
    assert final_weights(model, [swa]).module is model
    assert final_weights(model, [swa]).label == "raw"
    swa.after_epoch(model, 2)
    chosen = final_weights(model, [swa])
    assert swa.averaged == 1 and chosen.module is swa.model and chosen.label == "swa"


def test_early_stopping_on_an_ema_metric_keeps_the_ema_and_on_a_plain_one_the_model():
    model = nn.Linear(2, 2)
    ema = WeightEma(model, decay=0.9)
    best = watched_weights("ema_val_acc", model, [ema])
    assert best.module is ema.model and best.label == "ema"
    plain = watched_weights("val_acc", model, [ema])
    assert plain.module is model and plain.label == "raw"


def test_ema_averages_after_steps_and_swa_after_epochs():
    model = nn.Linear(2, 2)
    ema, swa = WeightEma(model, decay=0.5), WeightAverage(model, start_epoch=1)
    ema.after_epoch(model, 1)
    swa.after_step(model, 1)
    assert ema.updates == 0 and swa.averaged == 0  # the other hook is a no-op
    ema.after_step(model, 1)
    swa.after_epoch(model, 1)
    assert ema.updates == 1 and swa.averaged == 1


def test_swa_that_never_averaged_finishes_with_a_message_and_no_evaluation():
    model = nn.Linear(2, 2)
    swa, said = WeightAverage(model, start_epoch=3), []

    def validate(module):
        raise AssertionError("nothing to evaluate")

    assert swa.finish(lambda: [], validate, said.append) == {"swa_epochs": 0}
    assert "train.swa starts averaging" in said[0]
