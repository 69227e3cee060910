"""The voices Kling offers for text-to-speech lip-sync.

No API lists them; this table is the one in the protocol reference (Kling's own display
names). Ids 1-16 were listed for both languages; some resellers accept them only under
``zh``, so they are offered in both and the service has the last word.
"""

from __future__ import annotations

from dataclasses import dataclass

LANGUAGES = ("en", "zh")


@dataclass(frozen=True, slots=True)
class Voice:
    id: str
    name_en: str
    name_zh: str
    languages: tuple[str, ...]

    def name(self, language: str = "en") -> str:
        """The display name in ``language`` ("en" or "zh"), falling back to the other."""
        if language.startswith("zh"):
            return self.name_zh or self.name_en
        return self.name_en or self.name_zh

    def speaks(self, language: str) -> bool:
        return language in self.languages


VOICES: tuple[Voice, ...] = (
    Voice("genshin_vindi2", "Sunny", "阳光少年", ("en", "zh")),
    Voice("zhinen_xuesheng", "Sage", "懂事小弟", ("en", "zh")),
    Voice("ai_shatang", "Blossom", "青春少女", ("en", "zh")),
    Voice("genshin_klee2", "Peppy", "温柔小妹", ("en", "zh")),
    Voice("genshin_kirara", "Dove", "元气少女", ("en", "zh")),
    Voice("ai_kaiya", "Shine", "阳光男生", ("en", "zh")),
    Voice("ai_chenjiahao_712", "Lyric", "文艺小哥", ("en", "zh")),
    Voice("chat1_female_new-3", "Tender", "温柔姐姐", ("en", "zh")),
    Voice("cartoon-boy-07", "Zippy", "活泼男童", ("en", "zh")),
    Voice("cartoon-girl-01", "Sprite", "俏皮女童", ("en", "zh")),
    Voice("ai_huangyaoshi_712", "Rock", "稳重老爸", ("en", "zh")),
    Voice("ai_laoguowang_712", "Titan", "严肃上司", ("en", "zh")),
    Voice("chengshu_jiejie", "Grace", "优雅贵妇", ("en", "zh")),
    Voice("you_pingjing", "Helen", "温柔妈妈", ("en", "zh")),
    Voice("laopopo_speech02", "Prattle", "唠叨奶奶", ("en", "zh")),
    Voice("heainainai_speech02", "Hearth", "和蔼奶奶", ("en", "zh")),
    Voice("AOT", "Ace", "", ("en",)),
    Voice("oversea_male1", "Anchor", "", ("en",)),
    Voice("girlfriend_4_speech02", "Melody", "", ("en",)),
    Voice("chat_0407_5-1", "Siren", "", ("en",)),
    Voice("uk_boy1", "Bud", "", ("en",)),
    Voice("PeppaPig_platform", "Candy", "", ("en",)),
    Voice("ai_huangzhong_712", "Beacon", "", ("en",)),
    Voice("calm_story1", "Lore", "", ("en",)),
    Voice("uk_man2", "Crag", "", ("en",)),
    Voice("reader_en_m-v1", "The Reader", "", ("en",)),
    Voice("commercial_lady_en_f-v1", "Commercial Lady", "", ("en",)),
    Voice("tiyuxi_xuedi", "", "运动少年", ("zh",)),
    Voice("tiexin_nanyou", "", "幽默小哥", ("zh",)),
    Voice("girlfriend_1_speech02", "", "甜美邻家", ("zh",)),
    Voice("girlfriend_2_speech02", "", "职场女青", ("zh",)),
    Voice("zhuxi_speech02", "", "慈祥爷爷", ("zh",)),
    Voice("uk_oldman3", "", "唠叨爷爷", ("zh",)),
    Voice("dongbeilaotie_speech02", "", "东北老铁", ("zh",)),
    Voice("chongqingxiaohuo_speech02", "", "重庆小伙", ("zh",)),
    Voice("chuanmeizi_speech02", "", "四川妹子", ("zh",)),
    Voice("chaoshandashu_speech02", "", "潮汕大叔", ("zh",)),
    Voice("ai_taiwan_man2_speech02", "", "台湾男生", ("zh",)),
    Voice("xianzhanggui_speech02", "", "西安掌柜", ("zh",)),
    Voice("tianjinjiejie_speech02", "", "天津姐姐", ("zh",)),
    Voice("diyinnansang_DB_CN_M_04-v2", "", "新闻播报男", ("zh",)),
    Voice("yizhipiannan-v1", "", "译制片男", ("zh",)),
    Voice("guanxiaofang-v2", "", "元气少女", ("zh",)),
    Voice("tianmeixuemei-v1", "", "撒娇女友", ("zh",)),
    Voice("daopianyansang-v1", "", "刀片烟嗓", ("zh",)),
    Voice("mengwa-v1", "", "乖巧正太", ("zh",)),
)

VOICES_BY_ID: dict[str, Voice] = {voice.id: voice for voice in VOICES}


def get_voice(voice_id: str) -> Voice | None:
    return VOICES_BY_ID.get(voice_id)


def voices_for(language: str) -> list[Voice]:
    """Voices that speak ``language``, in the reference's order."""
    return [voice for voice in VOICES if voice.speaks(language)]
