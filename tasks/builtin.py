"""The eight datasets of the seed plan (DESIGN.md)."""
from __future__ import annotations

from .registry import register_dataset
from .spec import DatasetSpec

CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
# tner/ontonotes5 label2id (its dataset card); the ids are not grouped by type.
ONTONOTES_TAGS = (
    "O", "B-CARDINAL", "B-DATE", "I-DATE", "B-PERSON", "I-PERSON", "B-NORP", "B-GPE", "I-GPE",
    "B-LAW", "I-LAW", "B-ORG", "I-ORG", "B-PERCENT", "I-PERCENT", "B-ORDINAL", "B-MONEY", "I-MONEY",
    "B-WORK_OF_ART", "I-WORK_OF_ART", "B-FAC", "B-TIME", "I-CARDINAL", "B-LOC", "B-QUANTITY",
    "I-QUANTITY", "I-NORP", "I-LOC", "B-PRODUCT", "I-TIME", "B-EVENT", "I-EVENT", "I-FAC",
    "B-LANGUAGE", "I-PRODUCT", "I-ORDINAL", "I-LANGUAGE",
)
QA_COLUMNS = {"id": "id", "title": "title", "context": "context", "question": "question", "answers": "answers"}

for _spec in (
    DatasetSpec(
        name="imdb", protocol_sides={"cross-dataset": "meta-train"}, hub_id="stanfordnlp/imdb", task_type="classification",
        label_names=("neg", "pos"), columns={"text": "text", "label": "label"},
        splits=("train", "test"), train_split="train", eval_split="test",
        description="Large Movie Review Dataset: binary sentiment of IMDb reviews.",
        license="research use; cite Maas et al., ACL 2011",
    ),
    DatasetSpec(
        name="ag_news", protocol_sides={"cross-dataset": "meta-test"}, hub_id="fancyzhx/ag_news", task_type="classification",
        label_names=("World", "Sports", "Business", "Sci/Tech"), columns={"text": "text", "label": "label"},
        splits=("train", "test"), train_split="train", eval_split="test",
        description="AG's news topic classification (4 classes).",
        license="non-commercial research use (AG corpus readme)",
    ),
    DatasetSpec(
        name="yelp_review_full", protocol_sides={"cross-dataset": "meta-test"}, hub_id="Yelp/yelp_review_full", task_type="classification",
        label_names=("1 star", "2 star", "3 stars", "4 stars", "5 stars"),
        columns={"text": "text", "label": "label"},
        splits=("train", "test"), train_split="train", eval_split="test",
        description="Yelp review star rating, 5-way sentiment.",
        license="Yelp Dataset terms (HF card: other)",
    ),
    DatasetSpec(
        name="sst2", protocol_sides={"cross-dataset": "meta-train"}, hub_id="nyu-mll/glue", hub_config="sst2", task_type="classification",
        label_names=("negative", "positive"), columns={"text": "sentence", "label": "label", "id": "idx"},
        splits=("train", "validation"), train_split="train", eval_split="validation",
        description="Stanford Sentiment Treebank, binary (GLUE); the GLUE test split has no labels.",
        license="see GLUE; SST has no separate data licence",
    ),
    DatasetSpec(
        name="conll2003", protocol_sides={"cross-dataset": "meta-train"}, hub_id="eriktks/conll2003", task_type="ner",
        label_names=CONLL_TAGS, columns={"tokens": "tokens", "tags": "ner_tags", "id": "id"},
        splits=("train", "validation", "test"), train_split="train", eval_split="test",
        metric="entity_f1", description="CoNLL-2003 English NER, BIO tags over PER/ORG/LOC/MISC.",
        license="Reuters RCV1 terms of use",
    ),
    DatasetSpec(
        name="ontonotes5", protocol_sides={"cross-dataset": "meta-test"}, hub_id="tner/ontonotes5", task_type="ner",
        label_names=ONTONOTES_TAGS, columns={"tokens": "tokens", "tags": "tags"},
        splits=("train", "validation", "test"), train_split="train", eval_split="test",
        metric="entity_f1", description="OntoNotes 5.0 English NER (CoNLL-2012 split), 18 entity types.",
        license="LDC user agreement (LDC2013T19)",
    ),
    DatasetSpec(
        name="squad", protocol_sides={"cross-dataset": "meta-train"}, hub_id="rajpurkar/squad", hub_config="plain_text", task_type="qa",
        label_names=(), columns=QA_COLUMNS,
        splits=("train", "validation"), train_split="train", eval_split="validation",
        description="SQuAD v1.1 extractive question answering.", license="CC BY-SA 4.0",
    ),
    DatasetSpec(
        name="natural_questions", protocol_sides={"cross-dataset": "meta-test"}, hub_id=None, task_type="qa", label_names=(), columns=QA_COLUMNS,
        splits=("validation",), train_split=None, eval_split="validation",
        description=("Natural Questions, extractive (SQuAD schema): NQ dev questions whose long answer is a "
                     "paragraph, with short answers as spans. No Hub dataset has this schema, so it loads "
                     "from a mirror only; it has no train split and is meta-test only."),
        license="CC BY-SA 3.0",
    ),
):
    register_dataset(_spec)
