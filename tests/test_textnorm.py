import pytest

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.textnorm import REASON_EMPTY, REASON_NOT_ENCODABLE, Normalizer, Rejected, fix_old_style_accents
from deepspeech_it.paths import ALPHABET_DIR

ITALIAN = Normalizer(Alphabet.from_file(ALPHABET_DIR / "it.txt"))
ENGLISH = Normalizer(Alphabet.from_file(ALPHABET_DIR / "en.txt"), english_compatible=True)


@pytest.mark.parametrize("raw,expected", [
    ("L’anno «scorso» è stato bello!", "l'anno scorso è stato bello"),
    ("“Dov’è?” chiese.", "dov'è chiese"),
    ("Un po’ di pane, un po' d’acqua", "un po' di pane un po' d'acqua"),
    ("'ciao' disse", "ciao disse"),
    ("Canto-primo; fine...", "canto primo fine"),
    ("È GIÀ così", "è già così"),
    ("Nel 2020 c'erano 3,5 milioni", "nel duemilaventi c'erano tre virgola cinque milioni"),
    ("1.000 case, il 23% e 3,05", "mille case il ventitré per cento e tre virgola zero cinque"),
    ("Il 1º maggio, la 2ª volta, 30°", "il primo maggio la seconda volta trenta gradi"),
    ("Görlitz, Françoise e Straße", "gorlitz françoise e strasse".replace("ç", "c")),
    ("Perche' e' piu' bello in citta'", "perché è più bello in città"),
])
def test_italian_normalisation(raw, expected):
    assert ITALIAN.normalize(raw) == expected


@pytest.mark.parametrize("raw,reason", [
    ("la parola λόγος", REASON_NOT_ENCODABLE), ("Привет", REASON_NOT_ENCODABLE), ("…!?", REASON_EMPTY),
    ("", REASON_EMPTY), ("日本", REASON_NOT_ENCODABLE),
])
def test_rejections_carry_their_reason(raw, reason):
    with pytest.raises(Rejected) as rejected:
        ITALIAN.normalize(raw)
    assert rejected.value.reason == reason


def test_english_compatible_strips_accents_and_keeps_apostrophes():
    assert ENGLISH.normalize("Perché è già l’ora? Più tardi!") == "perche e gia l'ora piu tardi"
    assert ENGLISH.normalize("Ventitré") == "ventitre"
    assert all(ch.isascii() for ch in ENGLISH.normalize("Città più bella, però"))


@pytest.mark.parametrize("raw,expected", [
    ("perche'", "perché"), ("e' vero", "è vero"), ("piu' tardi", "più tardi"), ("citta'", "città"),
    ("ne' questo ne' quello", "né questo né quello"), ("caffe'", "caffè"), ("ventitre'", "ventitré"),
    ("cosi' e' andata", "così è andata"), ("Perche' E' cosi'", "Perché È così"),
])
def test_old_style_accents(raw, expected):
    assert fix_old_style_accents(raw) == expected


@pytest.mark.parametrize("text", ["dell'anno", "l'ho visto", "un po' di", "di' la verità", "va' via", "c'è",
                                  "quell'altro", "sta' zitto"])
def test_elisions_and_truncations_stay(text):
    assert fix_old_style_accents(text) == text
