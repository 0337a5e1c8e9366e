"""Whether a client's words say they may be in danger, as people really text it.

Suicide, self-harm, overdose, wanting to die, not being able to go on, goodbyes: in English
or Spanish, whatever language the client is recorded in. A text is first reduced to plain
words (case, accents, punctuation, emoji, repeated letters, text-speak and common
misspellings), then read against phrasings of those meanings. The phrasings are written in
ordinary spelling and pass through the same reduction when this module loads.

A miss leaves a person in crisis alone; a false alarm pages a clinician. So recall wins:
"I'm not suicidal" still pages (reading negation wrongly would cost more than a call), and
so does "suicide" in any sense. Idioms built from the same words stay out where a phrasing
can tell them apart: "this traffic is killing me", "dead tired", "me muero de risa",
"I took my pills", "me corté el pelo". "kys" ("kill yourself") is abuse aimed at someone
else, not the writer's own danger; it reaches staff as an ordinary reply to read.

Pure and deterministic: the workflow sandbox imports it, and replay must reach the same
answer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_REPEATED_LETTER = re.compile(r"([a-z])\1+")
# In a pattern, a letter after a backslash is an escape (\b, \d, \w), not a letter.
_REPEATED_LETTER_IN_PATTERN = re.compile(r"(?<!\\)([a-z])\1+")
_APOSTROPHES = re.compile(r"['’‘`´]")


def _squeeze(word: str) -> str:
    """Every run of a letter squeezed to one ("diieee" → "die", "pills" → "pils"): in a text,
    doubled letters carry no meaning, so the text and the phrasings are squeezed alike."""
    return _REPEATED_LETTER.sub(r"\1", word)


# Text-speak and common misspellings, word for word, in ordinary spelling.
_SPOKEN_AS = {
    # English
    "wanna": "want to", "wnna": "want to", "wan2": "want to",
    "wnt": "want", "wamt": "want", "whant": "want",
    "gonna": "going to", "gunna": "going to", "finna": "going to", "gna": "going to",
    "imma": "im going to",
    "gotta": "got to", "abt": "about", "rn": "right now", "bout": "about", "u": "you", "ur": "your",
    "cannot": "cant", "cnt": "cant", "dnt": "dont", "dun": "dont",
    "iam": "im", "tmrw": "tomorrow", "tmr": "tomorrow", "tonite": "tonight", "2nite": "tonight",
    "agian": "again", "agin": "again", "anymor": "anymore", "nomore": "no more",
    "slef": "self", "selfharm": "self harm", "selfharming": "self harming",
    "ded": "dead", "pillz": "pills", "medz": "meds",
    "kms": "kill myself", "sewerslide": "suicide", "unalive": "suicide",
    "unaliving": "suicide", "unalived": "suicide",
    # Spanish
    "q": "que", "k": "que", "ke": "que", "qe": "que",
    "xq": "porque", "pq": "porque", "xk": "porque", "pk": "porque", "porq": "porque",
    "x": "por", "d": "de", "aki": "aqui",
    "kiero": "quiero", "qiero": "quiero", "qero": "quiero", "quero": "quiero",
    "kero": "quiero", "quiro": "quiero", "kisiera": "quisiera", "qisiera": "quisiera",
    "bivir": "vivir", "vibir": "vivir", "bibir": "vivir",
}
_SPOKEN_AS_SQUEEZED = {_squeeze(said): _squeeze(meant) for said, meant in _SPOKEN_AS.items()}

# Long, distinctive words a one-letter slip should not hide ("myslef", "suicidel",
# "matrme"). Short words are left alone: one letter turns "die" into "did". A tuple, not a
# set: where a slip is one letter from two keywords, the first wins in every process.
_KEYWORDS = tuple(dict.fromkeys(_squeeze(word) for word in (
    "myself", "suicide", "suicidal", "suicidio", "suicidarme", "overdose", "overdosed",
    "sobredosis", "pastillas", "matarme", "morirme", "cortarme", "ahorcarme", "lastimarme",
)))
# Real words one slip away from a keyword, which must keep their own meaning.
_NOT_MISSPELLINGS = {_squeeze(word) for word in (
    "overdone", "matarte", "matarse", "matarlo", "matarla", "matarle", "morirte", "morirse",
    "cortarte", "cortarse", "cortarlo", "cortarla", "cortare", "contarme", "lastimarte",
    "lastimarse", "ahorcarte", "ahorcarse",
)}


def _one_slip_apart(word: str, keyword: str) -> bool:
    """One letter added, dropped, changed, or two neighbours swapped."""
    if word == keyword:
        return True
    if abs(len(word) - len(keyword)) > 1:
        return False
    if len(word) == len(keyword):
        differ = [i for i, (a, b) in enumerate(zip(word, keyword, strict=True)) if a != b]
        return len(differ) == 1 or (
            len(differ) == 2 and differ[1] == differ[0] + 1
            and word[differ[0]] == keyword[differ[1]] and word[differ[1]] == keyword[differ[0]]
        )
    shorter, longer = sorted((word, keyword), key=len)
    return any(longer[:i] + longer[i + 1:] == shorter for i in range(len(longer)))


def _spelled_out(word: str) -> str:
    if word in _SPOKEN_AS_SQUEEZED:
        return _SPOKEN_AS_SQUEEZED[word]
    if len(word) >= 5 and word not in _NOT_MISSPELLINGS:
        for keyword in _KEYWORDS:
            if _one_slip_apart(word, keyword):
                return keyword
    return word


def plain_words(text: str) -> str:
    """A text reduced to what it says: lower case, no accents, punctuation or emoji, doubled
    letters squeezed, text-speak and common misspellings spelled out."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = _APOSTROPHES.sub("", plain)
    plain = re.sub(r"[\W_]+", " ", plain)
    words = " ".join(_spelled_out(_squeeze(word)) for word in plain.split())
    words = re.sub(r"\bmy self\b", "myself", words)
    words = re.sub(r"\bi am\b", "im", words)
    words = re.sub(r"\bcan not\b", "cant", words)
    words = re.sub(r"\bany more\b", "anymore", words)
    # "want 2 die": a 2 after a verb is "to".
    return re.sub(r"\b(want|going|ready|ned|have|wish|try|trying|plan|deserve) 2\b",
                  r"\1 to", words)


def _phrasings(*alternatives: str) -> re.Pattern[str]:
    """Whole-word phrasings in ordinary spelling, squeezed like the texts they read."""
    squeezed = _REPEATED_LETTER_IN_PATTERN.sub(r"\1", "|".join(alternatives))
    return re.compile(rf"(?<!\w)(?:{squeezed})(?!\w)")


_PILLS = (r"(?:pills?|meds|medications?|medicine|tablets|tylenol|advil|ibuprofen|paracetamol|"
          r"acetaminophen|aspirin|xanax|benzos?|oxy\w*|opioids|insulin|lithium|antidepressants|"
          r"painkillers|prescriptions?|ambien|zolpidem|klonopin|clonazepam|valium|ativan|"
          r"lorazepam|seroquel|trazodone|prozac|zoloft|sertraline|lexapro)")
# What turns "I hurt myself" from a sprain into harm: not these everyday endings.
_ACCIDENT = (r"(?! (?:at (?:the )?(?:gym|work|practice)|in the foot|laughing|playing|lifting|"
             r"running|working|exercising|studying|falling|by accident|accidentally|"
             r"on (?!purpose))|(?: \w+){0,4} (?:shaving|cooking|chopping|slicing))")
# Heat and traffic wear people down too: "I can't take this heat anymore".
_EVERYDAY_NUISANCE = (r"(?<!heat anymore)(?<!traffic anymore)(?<!noise anymore)"
                      r"(?<!cold anymore)(?<!homework anymore)")
_EVERYDAY_TRIP = (r"(?! (?:the|a|an|that|this|our|vacation|holiday|today|tomorrow|"
                  r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|it|line|time|"
                  r"leave|break|trip))")

_INTENT = (
    r"(?:want|wanted|wants|need|ready|deserve|deserves|plan|plans|planning|trying|tried|try|"
    r"wish|wished|hope|hoping|rather|should|let me|going|about|close|tempted|decided|"
    r"urge|urges|thinking|think|thought|thoughts|feel like|feeling like|considering|might|"
    r"will|ill|just|keep|kept|been|started)"
)
_ACT = (
    r"(?:die(?! (?:of|from|laughing|for|if|in a (?:fire|hole)))|dying(?! (?:of|from|laughing|"
    r"for|to|inside))|be dead|not exist|stop existing|not be alive|"
    r"not be here(?= *$| anymore| much longer)|be gone(?= *$| forever| for good)|"
    r"stop (?:breathing|living)|"
    r"(?:end|ending) (?:it|things|everything|my life|it all)(?! (?:with|off|early|now and))|"
    r"(?:jump|jumping)(?= *$| off| from| in front| tonight| now)|"
    r"overdose|od|disappear|(?:go to )?sleep forever|(?:not|never) wake up|"
    r"(?:cut|cutting)(?= *$| again| so bad| tonight| right now| now| myself| my (?:wrists?|"
    r"arms?|legs?|thighs?|skin))|give up on life)"
)

ENGLISH = _phrasings(
    # Suicide, said outright or in slang.
    r"suicid\w*", r"commit (?:sudoku|die)", r"self ?delete",
    # Harming or killing oneself, except the everyday accidents.
    r"(?:kill|killing|killed|kills|hurt|hurting|hurts|harm|harming|harmed|cut|cutting|cuts|"
    r"burn|burned|burnt|burning|hang|hanging|hung|shoot|shooting|shot|stab|stabbing|stabbed|"
    r"drown|drowning|poison|poisoning|poisoned|end|ending|hit|hitting|starve|starving|"
    r"scratch|scratching|scratched|punch|punching|punched|bite|biting|bit|"
    r"overdose) myself" + _ACCIDENT,
    r"(?:to|going to|will|ill|just|should|might) off myself",
    r"self ?(?:harm\w*|injur\w*|mutilat\w*)",
    r"(?:relapsed|relapse|urges?|urge to|want to|going to) (?:and |on |to )?sh",
    r"(?:relapsed|relapse|urges?) (?:and |on |to )?(?:cut|cutting)",
    r"(?:arms?|legs?|wrists?|thighs?|skin|stomach) (?:are |is )?(?:all )?cut up",
    r"(?:use|using) (?:it|them|this|that|a knife|the knife|a razor|the razor|a blade) on myself",
    r"cut(?:ting)? (?:again|my (?:wrists?|arms?|legs?|thighs?|skin))",
    r"(?:slit|slash|slashed|sliced|cut|cutting) (?:my )?(?:wrists?|veins?|throat)",
    r"(?:from|been|started|stop|quit) cutting(?! (?:back|down|corners|hair|out|class))",
    r"bleeding (?:a lot|so much|out|badly|everywhere)", r"(?:til|until) i bleed",
    r"(?:cut|burn\w*|hurt|hit|scratch\w*|punch\w*|stab\w*) my (?:\w+ ){0,4}on purpose",
    # Dying, unless it is for a coffee, of laughter or of boredom.
    r"die(?! (?:of|from|laughing|for|hard|in a (?:fire|hole)))",
    r"(?:if|when|until|til|before) i (?:just )?(?:died|was dead|were dead|was gone|"
    r"were gone|wasnt here|werent here|wasnt around|disappeared)",
    r"live or die",
    # Wanting, planning or being close to an act of dying.
    _INTENT + r" (?:to |on |of |about )?(?:just |really |simply |honestly )?" + _ACT,
    r"feel like (?:i should die|i want to die)",
    r"(?:thinking|think|thought|thoughts|dreaming|dream) (?:about|of) (?:death|being dead)",
    r"(?:want|wish|rather|better off) (?:to )?(?:be )?dead",
    r"(?:better|happier|easier) (?:off )?(?:gone|dead|not existing|not being here|not alive)",
    r"(?:planning|planned|plan) my (?:death|suicide|exit)",
    r"cant keep (?:doing|living|going on)(?: like)? this",
    r"(?:bye|goodbye) (?:\w+ ){0,4}love you all", r"love you all(?: \w+){0,4} (?:bye|goodbye)",
    rf"(?:vodka|alcohol|whiskey|wine|booze|drinks?) and (?:my |the |some |all )?{_PILLS}",
    r"(?:do|doing|did) (?:something|it) to myself",
    r"(?:gave|giving|give) away (?:all )?(?:of )?(?:my|all my) (?:stuff|things|belongings|"
    r"pets?|cat|dog)",
    r"im cutting(?= *$| right now| again)",
    r"blood everywhere", r"cant stop (?:the )?bleeding",
    r"wish (?:i|id) (?:was|were|had) (?:dead|gone)",
    r"wish i (?:wasnt|werent) (?:alive|here|born|around)",
    r"wish (?:i|id) (?:had )?never (?:been born|existed|woken up|woke up)",
    r"(?:shouldnt|should not|dont deserve to|dont want to|do not want to|not want to) "
    r"(?:be alive|live|exist|go on|wake up|be (?:here|around) (?:anymore|no more))",
    r"(?:and|to|could|would|will|ill|hope i|wish i|just) (?:never|not|dont) wake up",
    r"want to sleep (?:forever|and never)",
    r"disappear (?:forever|for good)",
    r"(?:ill|will|going to) be (?:dead|gone) (?:by|before|tomorrow|soon|"
    r"tonight)",
    r"im not safe", r"not safe (?:with|around|from) myself",
    r"(?:cant|dont think i can|not sure i can|unable to) keep myself safe",
    r"(?:dont|do not) feel safe (?:with|around) myself",
    r"(?:have|made|got) a plan$",
    r"(?:life|living|everything|my life) (?:is|feels|seems) (?:so )?(?:pointless|meaningless|"
    r"hopeless)",
    r"want out(?: of (?:life|this life|here|this world))?$",
    r"(?:want|wish i could) (?:to )?(?:just )?disappear",
    # Ending it.
    r"(?:end|ending|ended) (?:it all|my (?:own )?life|everything)",
    r"(?:want to|going to|will|ill|about to|ready to|plan to|planning to|thinking of|"
    r"thinking about|feel like|thoughts of|decided to|just) (?:end|ending) it(?! with| off)",
    r"(?:want|need) (?:it|this|everything|it all|this pain|the pain) (?:all )?to "
    r"(?:end|stop|be over)",
    r"end (?:it |this |everything )?(?:permanently|for good|forever)",
    r"take my (?:own )?life",
    # Not being able to go on.
    r"cant go on" + _EVERYDAY_TRIP,
    r"cant (?:cope anymore|keep going(?! to)|keep living|live like this|live anymore|"
    r"go on like this)",
    r"(?:no|whats the|what is the|wats the|dont see the|cant see the|see no) point "
    r"(?:in |of |to )?(?:living|going on|being alive|being here|life|anymore|existing)",
    r"(?:no|any|one) reasons? to (?:live|go on|keep going|keep living|stay alive|be alive|"
    r"be here)",
    r"nothing (?:left )?to live for",
    r"(?:not|isnt|is not|aint) worth (?:living|it anymore)",
    r"(?:tired|sick|done) (?:of|with) (?:\w+ ){0,3}(?:living|alive|life|existing)",
    r"(?:tired|sick|done) (?:of|with) it all",
    r"giv(?:e|ing|en) up on (?:life|living|everything)",
    r"(?:no|dont see a|cant see a|cant find a) way out",
    r"not going to make it (?:through|til|until|to) (?:tonight|the night|tomorrow)",
    r"(?:better|happier|easier) (?:off )?(?:without me|if i (?:was|were|wasnt|werent|died|"
    r"am gone))",
    r"(?:no one|noone|nobody) (?:would|will|is going to|wouldnt) (?:even )?(?:miss|notice) me",
    r"(?:this|this life|life)(?: thing)? anymore",
    r"cant (?:live|cope|take|handle|deal|bear|stand|fight|continue|keep)(?: \w+){0,4} "
    r"(?:anymore|any longer|no more)" + _EVERYDAY_NUISANCE,
    r"cant do (?:this|it|life|any of this)(?: \w+){0,2} (?:anymore|any longer|no more)",
    r"cant anymore",
    r"end (?:my|the|this) (?:suffering|pain)",
    r"im done goodbye", r"(?:bye|goodbye) (?:everyone|all|forever|world)",
    r"why (?:should|do|would) i (?:even |still )?(?:live|be alive|go on|keep going)",
    r"why am i (?:still )?(?:alive|living)",
    r"my life is over", r"(?:tired|sick) of everything",
    r"(?:6|six) (?:feet|ft) under",
    r"bullet (?:in|through) my (?:head|brain)", r"gun to my head", r"blow my brains out",
    r"(?:drive|driving|drove) (?:my car )?off (?:the|a) (?:road|bridge|cliff)",
    r"do (?:\w+ )?to myself",
    rf"(?:took|taken|swallowed|taking) (?:\w+ ){{0,2}}(?:moms|mums|dads|grandmas|grandpas|"
    rf"sisters|brothers|parents|roommates) {_PILLS}",
    # Overdose and the means at hand.
    r"overdos\w*",
    r"(?:i|just|going to|want to|about to|tried to|almost|nearly|will|might) od(?:ed|ing)?",
    r"(?:took|taken|swallowed|downed|ate|popped|chugged|drank) (?:\w+ ){0,3}"
    r"(?:all|every|everything|whole|entire|bunch|lot|lots|handful|too many|too much|bottle|box|"
    rf"pack|rest|dozens|\d{{2,}})(?: \w+){{0,4}} {_PILLS}",
    r"(?:going to|want to|about to|will|ill|plan to|planning to|thinking of|thinking about|"
    r"might|tempted to) (?:take|swallow|down|pop) (?:\w+ ){0,2}(?:all|every|whole|entire|"
    rf"bunch|lot|handful|too many|bottle|\d{{2,}})(?: \w+){{0,4}} {_PILLS}",
    r"swallow\w* (?:\w+ ){0,2}(?:all|every|whole|entire|bunch|lot|handful)",
    r"(?:took|taken|swallowed|downed|drank|chugged) (?:\w+ ){0,2}(?:whole|entire) "
    r"(?:bottle|box|pack)",
    rf"(?:saving|saved|stockpiling|hoarding) (?:up )?(?:all )?(?:my |the )?{_PILLS}",
    rf"(?:{_PILLS}|rope|noose|gun|knife|razor|blade) (?:ready|in my hand|lined up)",
    r"noose", r"(?:have|bought|got) (?:a|the) (?:rope|noose|gun)",
    r"(?:drink|drank|drinking|swallow\w*) (?:\w+ ){0,3}bleach",
    r"jump(?:ing)? (?:off|from) (?:the|a|my|this) (?:bridge|building|roof|balcony|cliff|"
    r"overpass|tower)",
    r"(?:jump|step|walk|lie down)\w* in front of (?:a |the |an )?(?:train|bus|car|truck|"
    r"traffic|subway)",
    r"(?:drive|crash|driving|crashing|drove) (?:my car |the car )?into (?:a |the )?"
    r"(?:wall|tree|traffic|river|lake|pole|truck)",
    # Goodbyes.
    r"this is (?:my )?(?:goodbye|the end|my last message)",
    r"goodbye (?:forever|for good|everyone|world|cruel world)",
    r"(?:goodbye|farewell|last) (?:note|letter)s?",
    r"(?:wont|will not|not going to) be (?:here|around|alive) (?:tomorrow|much longer|"
    r"anymore|by morning|for long)",
    r"by the time you (?:read|see|get) this",
)

_EVERYDAY_CUT = (r"(?! (?:el|la|los|las|un|una|mi|mis) (?:pelo|cabello|fleco|flequillo|unas|"
                 r"puntas|barba|dedo|dedos|mano|papel)| con (?:un |el )?papel|"
                 r"(?: \w+){0,4} (?:cocinando|afeitando\w*|rasurando\w*|pelando|picando))")
_EVERYDAY_INJURY = (r"(?! (?:el|la|los|las|un|una|mi|mis|en|jugando|corriendo|al|haciendo|"
                    r"entrenando|cocinando))")
_FIGURATIVE_DEATH = (r"(?! de (?:risa|hambre|verguenza|frio|calor|sueno|miedo|aburrimiento|"
                     r"envidia|ganas|cansancio|pena|amor))")

SPANISH = _phrasings(
    # Suicidarse, matarse.
    r"suicid\w*", r"autolesion\w*",
    r"(?<!va a )(?<!van a )matarme",
    r"me (?:quiero|voy a|pienso|intente|intento|puedo|quisiera|gustaria|tengo que|"
    r"dan ganas de|dieron ganas de|iba a) matar",
    r"me (?:mato|matare|mataria)(?! (?:trabajando|estudiando|de risa))",
    r"quit\w* la vida", r"(?:acabar|terminar|acabo|termino|acabare|terminare) con "
    r"(?:mi vida|todo)",
    r"(?:poner|ponerle) fin a (?:mi vida|todo)",
    r"que todo (?:se )?(?:termine|acabe)", r"que (?:se )?(?:acabe|termine) (?:todo|mi vida)",
    # Querer morir, no querer vivir.
    r"morirme" + _FIGURATIVE_DEATH,
    r"(?:quiero|quisiera|deseo|prefiero|ganas de|necesito|pienso en) morir" + _FIGURATIVE_DEATH,
    r"(?:ojala|mejor|quisiera) (?:me )?(?:muera|muero|muriera)" + _FIGURATIVE_DEATH,
    r"(?:quiero|prefiero|quisiera|mejor|ojala|deseo) (?:estar |estuviera |estar ya )?"
    r"muert[oa]s?",
    r"(?:no quiero|no deseo|no tengo ganas de|dejar de|cansad[oa] de|hart[oa] de|"
    r"me canse de) (?:seguir )?(?:vivir|viviendo)",
    r"(?:cansad[oa]|hart[oa]) de (?:la vida|vivir|existir)",
    r"no (?:soporto|aguanto|puedo) (?:seguir )?vivir",
    r"no (?:aguanto|soporto|puedo con) (?:esta|mi|la) vida",
    r"(?:no|nunca) (?:haber|hubiera|hubiese) nacido",
    r"(?:no tengo|sin) (?:\w+ ){0,2}(?:para|de|por que|porque|para que) (?:vivir|seguir viviendo)",
    r"(?:pastillas|navaja|cuchillo|pistola|soga|cuerda) en (?:la|mi|mis) manos?",
    r"me (?:quiero|voy a) (?:aventar|tirar|lanzar)(?= *$| ya| hoy| ahora)",
    r"(?:por que|porque|para que) (?:sigo|seguir|estoy) (?:vivo|viva|viviendo)",
    r"dormir para siempre", r"no (?:volver a )?amanecer",
    r"ojala (?:me )?(?:atropell\w*|maten|pase algo)",
    r"colgarme", r"me (?:quiero|voy a) colgar",
    r"(?:soga|cuerda|pastillas|pistola|navaja) (?:lista|listas|preparada|preparadas)",
    r"(?:tome|trague|tomo) (?:\w+ ){0,2}(?:pastillas|medicinas) de (?:mi|mis) "
    r"(?:mama|papa|abuela|abuelo|hermana|hermano|papas)",
    r"no quiero (?:existir|estar aqui|estar en este mundo|despertar)",
    r"(?:no quiero|no deseo) (?:estar|seguir) (?:viv[oa]|aqui|en este mundo)",
    r"(?:mejor|prefiero|quisiera|quiero) ya no estar", r"ya no estar aqui",
    r"dejar de sufrir(?! por)",
    r"vivo o muero",
    r"(?:si|cuando) (?:me )?(?:muero|muera|muriera|desaparezco|desapareciera|ya no estoy|"
    r"ya no estuviera)" + _FIGURATIVE_DEATH,
    r"hacer una (?:locura|tonteria)",
    r"(?:despedir(?:me)?|me despido) de todos", r"adios a todos", r"perdonenme por todo",
    r"(?:sangrando|sangro) (?:mucho|demasiado|sin parar)", r"no (?:para|deja) de sangrar",
    r"(?:dejar de|no quiero|ya no quiero) (?:seguir )?existir",
    r"(?:irme|ir|salir) de este mundo", r"dejar este mundo",
    r"no quiero seguir(?! (?:con|en|yendo|pagando|trabajando|asistiendo|viniendo))",
    r"(?:no|nunca) (?:volver a )?despertar(?! a )",
    r"(?:no tengo|sin) (?:razon|razones|motivos?|por que|porque|para que) (?:para |de )?vivir",
    r"no vale la pena (?:vivir|seguir|mi vida|la vida)",
    r"(?:no le veo|no le encuentro|no encuentro|no tiene|sin) (?:ningun )?(?:sentido|caso) "
    r"(?:a )?(?:vivir|seguir|la vida|mi vida|nada)",
    r"(?:la|mi) vida (?:ya )?no tiene (?:ningun )?sentido",
    r"mejor sin mi",
    r"nadie (?:me )?(?:va a )?(?:extran\w*|notaria|echaria de menos)",
    r"desaparecer (?:para siempre|del mundo)", r"(?:irme|ir|me voy)(?: de aqui)? para siempre",
    r"(?:mejor|prefiero|quisiera) (?:ni|no) existir",
    r"adios (?:\w+ ){0,4}(?:los|las) quiero", r"(?:los|las) quiero (?:\w+ ){0,4}adios",
    r"(?:quiero|ganas de|quisiera|necesito) (?:\w+ )?desaparecer",
    r"(?:mejor|seria mejor) si (?:me muero|me muriera|no estuviera|desaparezco|desapareciera|"
    r"no existiera)" + _FIGURATIVE_DEATH,
    # No poder más.
    r"(?:no|ya no) (?:puedo|aguanto|soporto|doy) mas(?! con (?:el|la|los|este|esta) "
    r"(?:calor|frio|trafico|ruido|tarea|sueno|hambre|lluvia|examenes|examen))",
    r"no puedo (?:mas )?con (?:esto|todo|mi vida|la vida)",
    r"no aguanto(?! (?:el|la|los|las|a|al|tu|su|mi|este|esta|ese|esa|cuando|que|mucho|"
    r"estar|ir))",
    r"no puedo seguir(?! (?:con|en|yendo|pagando|trabajando|asistiendo|viniendo))",
    # Sobredosis.
    r"sobredosis",
    r"(?:tome|trague|tomo|tomar|tomarme|tragarme|tomado|tragado) (?:\w+ ){0,3}(?:"
    r"(?:todas|todo|toda|muchas|monton|\d{2,}) (?:\w+ ){0,3}(?:pastillas|pastis|medicinas?|"
    r"medicamentos?|pildoras|tabletas|clonazepam|rivotril|diazepam)|"
    r"(?:un|el|todo el|toda la|una) (?:frasco|caja|bote))",
    # Autolesión.
    r"cortarme" + _EVERYDAY_CUT,
    r"me (?:corto|corte|estoy cortando|he cortado|volvi a cortar|quiero cortar|voy a cortar)"
    + _EVERYDAY_CUT,
    r"cort\w* (?:las |mis )?venas",
    r"hacerme (?:dano|algo)",
    r"me (?:\w+ ){0,2}(?:hacer|hago|hice|haga|hecho|haciendo) (?:mucho )?(?:dano|cortes|"
    r"heridas)" + _EVERYDAY_INJURY,
    r"lastimarme" + _EVERYDAY_INJURY,
    r"me (?:lastimo|lastime|estoy lastimando|he lastimado|quiero lastimar|voy a lastimar)"
    + _EVERYDAY_INJURY,
    # Medios, planes, despedidas.
    r"ahorcar(?:me)?", r"dispararme", r"envenenarme", r"(?<!con )(?:una|la) soga(?! al cuello)",
    r"(?:pegarme|darme|meterme) un tiro", r"me (?:\w+ ){0,2}(?:pegar|dar|meter) un tiro",
    r"(?:tirarme|tirar|aventarme|aventar|lanzarme|lanzar|arrojarme|arrojar|saltar|brincar) "
    r"(?:\w+ )?"
    r"(?:de|del|desde|por|a|al|en) (?:un |una |el |la |las |los )?(?:puente|edificio|ventana|"
    r"balcon|techo|azotea|vias|tren|metro|carretera|precipicio|barranco)",
    r"carta de despedida", r"esto es (?:un |mi )?adios", r"adios para siempre",
    r"ya no voy a estar(?: aqui| mas|$)",
)


# Things, not people, that die: taken out before the phrasings read the text.
_THINGS_THAT_DIE = _phrasings(
    r"(?:phone|battery|laptop|computer|tablet|plants?|flowers?|car|charger|fish)"
    r"(?: \w+){0,3} (?:die|dying|died|dead)"
)


def mentions_crisis(text: str, extra_phrases: Iterable[str] = ()) -> bool:
    """Whether the text says the writer may be in danger, in English or Spanish.

    `extra_phrases` are a clinic's own (its policy's `crisis_words`), matched as whole words
    after the same reduction to plain words, so "Hacerme DAÑO" in a policy catches
    "hacerme daño" and "hacerme danoo" in a text."""
    said = plain_words(text)
    about_people = _THINGS_THAT_DIE.sub(" | ", said)
    if ENGLISH.search(about_people) or SPANISH.search(about_people):
        return True
    padded = f" {said} "
    return any(f" {phrase} " in padded
               for phrase in map(plain_words, extra_phrases) if phrase)
